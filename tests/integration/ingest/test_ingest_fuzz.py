"""Fuzz the front doors (bounded): no 5xx, no crash, nothing published for rejected input."""
from __future__ import annotations

import json
import re

from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from hl7.mllp import open_hl7_connection

from services.ingest.hl7.parse import parse
from services.ingest.mllp.server import MllpServer
from services.ingest.receiver import auth
from services.ingest.receiver.app import ReceiverContext, create_app
from services.core.secrets import SecretSettings
from tests.integration.ingest.notify import notification

FUZZ = settings(max_examples=20, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
SECRETS = SecretSettings.from_env({"VIGIL_ENV": "test"})
json_values = st.recursive(st.none() | st.booleans() | st.integers(-5, 2 ** 64) | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                       max_size=4), max_leaves=12)
FIELDS = ["resourceType", "type", "entry", "parameter", "name", "valueString", "valueCode", "valueReference",
          "part", "reference", "resource", "meta", "versionId", "id"]


def mutate(doc, path: list, value):
    """Replace the node at ``path`` (indices into the JSON tree, wrapped) with ``value``."""
    node = doc
    for step in path[:-1]:
        if isinstance(node, dict) and node:
            node = node[sorted(node)[step % len(node)]]
        elif isinstance(node, list) and node:
            node = node[step % len(node)]
        else:
            return doc
    if isinstance(node, dict) and node:
        node[sorted(node)[path[-1] % len(node)]] = value
    elif isinstance(node, list) and node:
        node[path[-1] % len(node)] = value
    return doc


class Tally:
    def __init__(self):
        self.published = 0
        self.statuses: dict[int, int] = {}


@pytest.fixture
async def http(ingest):
    app = create_app(ReceiverContext(ingest.registry, SECRETS, ingest.handler))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest") as client:
        yield client


@FUZZ
@given(kind=st.sampled_from(["mutate", "random", "bytes"]),
       path=st.lists(st.integers(0, 50), min_size=1, max_size=7), value=json_values, raw=st.binary(max_size=200))
async def test_fuzz_notification_endpoint(ingest, http, kind, path, value, raw):
    tally = ingest.__dict__.setdefault("_tally", Tally())
    t = ingest.tenant.id
    fake_doc = {"resourceType": "DocumentReference", "id": "nope-" + str(abs(hash(str(path))) % 10 ** 6),
                "meta": {"versionId": "1", "lastUpdated": "2026-01-01T00:00:00Z"}, "status": "current"}
    if kind == "mutate":
        body = json.dumps(mutate(notification("fz", "event-notification", since=1, events=[(1, fake_doc)],
                                              content="id-only"), path, value)).encode()
    elif kind == "random":
        body = json.dumps(value).encode()
    else:
        body = raw
    r = await http.post(f"/notify/{t}", content=body, headers={
        "Content-Type": "application/fhir+json", "Authorization": f"Bearer {auth.channel_token(SECRETS, t)}",
        auth.SIGNATURE_HEADER: auth.sign(SECRETS, t, body)})
    assert r.status_code < 500, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    tally.statuses[r.status_code] = tally.statuses.get(r.status_code, 0) + 1
    if r.status_code == 200:
        found = re.search(r"published=(\d+)", r.json()["issue"][0]["diagnostics"])
        tally.published += int(found.group(1))
    # The response comes after the broker ack, so the topic already holds everything published.
    assert len(await ingest.events(want=10 ** 6, timeout=0.4, settle=0)) == tally.published


SAMPLES = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "hl7v2"
PUBLIC = [p.read_bytes().decode("utf-8") for p in sorted(SAMPLES.glob("*.hl7"))] if SAMPLES.exists() else []
hl7_lines = st.lists(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60),
                     max_size=5)


def _mutated(data) -> str:
    """A public sample with a slice cut out, a character replaced, or both."""
    text = data.draw(st.sampled_from(PUBLIC)) if PUBLIC else "MSH|^~\\&|A|XYZHOSPITAL|B|C|20240101||MDM^T02|1|P|2.5"
    cut = data.draw(st.integers(0, len(text)))
    length = data.draw(st.integers(0, 40))
    text = text[:cut] + text[cut + length:]
    if text and data.draw(st.booleans()):
        at = data.draw(st.integers(0, len(text) - 1))
        text = text[:at] + data.draw(st.sampled_from(["|", "^", "~", "\\", "&", "\r", "\n", "é", "\x00", "Z"])) + \
            text[at + 1:]
    return text


@FUZZ
@given(segments=hl7_lines, head=st.sampled_from([
    "MSH|^~\\&|A|XYZHOSPITAL|B|C|20240101||MDM^T02|C{n}|P|2.5",
    "MSH|^~\\&|A|XYZHOSPITAL|B|C|20240101||ADT^A01|C{n}|P|2.5\rPID|1||M1",
    "MSH|^~\\&|A|XYZHOSPITAL|B|C|20240101||SIU^S12|C{n}|P|2.5\rSCH|x\rPID|1||M1", "", "sample"]),
       n=st.integers(0, 10 ** 6), data=st.data())
async def test_fuzz_mllp(ingest, mllp_port, segments, head, n, data):
    if head == "sample":
        text = _mutated(data)
    else:
        text = "\r".join([head.format(n=n), *segments]) if head else "\r".join(segments)
    reader, writer = await open_hl7_connection("127.0.0.1", mllp_port, encoding="utf-8")
    try:
        writer.writeblock(text.encode("utf-8"))
        await writer.drain()
        ack = parse(await reader.readblock())
    finally:
        writer.close()
        await writer.wait_closed()
    code = ack.get("MSA", 1)
    assert code in ("AA", "AE", "AR")
    seen = len(await ingest.events("hl7-inbound", want=10 ** 6, timeout=0.4, settle=0))
    before = ingest.__dict__.setdefault("_seen", 0)
    if code != "AA":
        assert ack.has("ERR")
        assert seen == before, "a refused message was stored"
    ingest._seen = seen
    # The listener keeps answering: a good message on a new connection still gets AA.
    reader, writer = await open_hl7_connection("127.0.0.1", mllp_port, encoding="utf-8")
    try:
        writer.writeblock(f"MSH|^~\\&|A|XYZHOSPITAL|B|C|20240101||ADT^A08|OK{n}|P|2.5\rPID|1||M1".encode())
        await writer.drain()
        assert parse(await reader.readblock()).get("MSA", 1) == "AA"
    finally:
        writer.close()
        await writer.wait_closed()
    ingest._seen = len(await ingest.events("hl7-inbound", want=10 ** 6, timeout=0.4, settle=0))


@pytest.fixture
async def mllp_port(ingest):
    srv = MllpServer(ingest.pipeline, "127.0.0.1", 0)
    await srv.start()
    yield srv.port
    await srv.stop()
