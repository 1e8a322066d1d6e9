"""HL7 v2 over MLLP against the real broker and PostgreSQL: AA on durable receipt.

The listener stores each accepted message (sealed) on ``vigil.<tenant>.hl7-inbound`` and only
then answers AA; nothing in the ACK path calls the EHR (these tests keep the EHR in outage).
"""
from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest
from hl7.mllp import open_hl7_connection

from services.ingest.hl7.parse import parse
from services.ingest.mllp.server import MllpServer

SAMPLES = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "hl7v2"
PUBLIC = sorted(p.name for p in SAMPLES.glob("*.hl7")) if SAMPLES.exists() else []
INBOUND = "hl7-inbound"


def sample(name: str) -> bytes:
    path = SAMPLES / name
    if not path.exists():
        pytest.skip(f"sample {path} not available")
    return path.read_bytes()


async def send(port: int, blocks: list[bytes]) -> list:
    reader, writer = await open_hl7_connection("127.0.0.1", port, encoding="utf-8")
    acks = []
    try:
        for block in blocks:
            writer.writeblock(block)
            await writer.drain()
            acks.append(parse(await asyncio.wait_for(reader.readblock(), 30)))
    finally:
        writer.close()
        await writer.wait_closed()
    return acks


@pytest.fixture
async def server(ingest):
    srv = MllpServer(ingest.pipeline, "127.0.0.1", 0)
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
async def ehr_down(ingest):
    """The tenant's EHR answers nothing but 503 while the test runs."""
    await ingest.ehr.admin.set_faults(ingest.tenant.id, outage_s=600)
    yield
    await ingest.ehr.admin.clear_faults(ingest.tenant.id)


async def test_every_public_sample_gets_aa_and_is_stored_once(ingest, server, ehr_down):
    if len(PUBLIC) != 12:
        pytest.skip("the 12 public HL7 samples are not available")
    acks = await send(server.port, [sample(n) for n in PUBLIC])
    assert [(a.get("MSA", 1), a.get("ERR", 3) or None) for a in acks] == [("AA", None)] * 12, \
        dict(zip(PUBLIC, [(a.get("MSA", 1), a.get("ERR", 8)) for a in acks]))
    for name, ack in zip(PUBLIC, acks):
        assert ack.get("MSA", 2) == parse(sample(name)).header.control_id

    # A resend of everything is recognised: AA again, nothing stored twice.
    again = await send(server.port, [sample(n) for n in PUBLIC])
    assert [a.get("MSA", 1) for a in again] == ["AA"] * 12
    events = await ingest.events(INBOUND, want=13, timeout=6)
    assert len(events) == 12
    assert len({e.id for e in events}) == 12
    by_control: dict = {}
    for e in events:
        assert e.type == "vigil.ingest.hl7-received"
        by_control.setdefault(e.data["controlId"], []).append(e)
        raw = await ingest.keyring.decrypt(ingest.tenant.id, base64.b64decode(e.data["sealed"]), "hl7-raw")
        assert raw in {sample(n) for n in PUBLIC}
        # Neither the payload nor the key holds readable message content or the patient identifier.
        sealed = base64.b64decode(e.data["sealed"])
        assert b"PID|" not in sealed and b"MSH|" not in sealed
        assert not any("PID" in str(v) for k, v in e.data.items() if k != "sealed")
    # The MDM samples 01 and 02 reuse one MSH-10 for different content: both are kept.
    assert len(by_control["PS1-20080131160038"]) == 2
    mdm = [e for e in events if e.data["kind"] == "MDM^T02" and e.data["facility"] == "SFAC"][0]
    assert mdm.key and mdm.key.startswith("pk-") and "3196695816" not in mdm.key


async def test_a_patients_messages_share_one_key(ingest, server):
    acks = await send(server.port, [sample("ADT-A01-01.hl7"), sample("ADT-A03-01.hl7"), sample("ADT-A08-01.hl7")])
    assert [a.get("MSA", 1) for a in acks] == ["AA"] * 3
    events = await ingest.events(INBOUND, want=3, timeout=6)
    assert len(events) == 3 and len({e.key for e in events}) == 1


async def test_broker_failure_gives_ae_stores_nothing_and_resend_is_processed(ingest, server):
    await ingest.publishers.stop()  # the producer is gone: the durable write fails
    try:
        [ack] = await send(server.port, [sample("MDM-T02-03.hl7")])
    finally:
        await ingest.publishers.start()
    assert ack.get("MSA", 1) == "AE" and ack.get("ERR", 3) == "207"
    assert await ingest.events(INBOUND, want=1, timeout=2, settle=0) == []
    # Not remembered as received: the resend is stored and acknowledged, once.
    [ack] = await send(server.port, [sample("MDM-T02-03.hl7")])
    assert ack.get("MSA", 1) == "AA"
    [ack] = await send(server.port, [sample("MDM-T02-03.hl7")])
    assert ack.get("MSA", 1) == "AA"
    assert len(await ingest.events(INBOUND, want=2, timeout=5)) == 1


async def test_listener_answers_while_the_database_is_unreachable(ingest, server):
    await send(server.port, [sample("ADT-A08-01.hl7")])  # the tenant's data key is loaded once
    await ingest.pools.close()  # no PostgreSQL for the listener from here on
    acks = await send(server.port, [sample("MDM-T02-03.hl7"), sample("SIU-S12-01.hl7")])
    assert [a.get("MSA", 1) for a in acks] == ["AA", "AA"]
    assert len(await ingest.events(INBOUND, want=3, timeout=5)) == 3


async def test_unknown_types_are_accepted_and_bad_hl7_is_refused(ingest, server):
    blocks = [b"garbage that is not hl7",
              b"MSH|^~\\&|A|UNKNOWNFAC|B|NOWHERE|20240101||MDM^T02|2|P|2.5\rPID|1||X",
              b"MSH|^~\\&|A|XYZHOSPITAL|B|C|20240101||MDM^T02|3|P|3.0\rPID|1||X",
              b"MSH|^~\\&|A|XYZHOSPITAL|B|C|20240101||MDM^T02||P|2.5\rPID|1||X",
              b"MSH|^~\\&|A|XYZHOSPITAL|B|C|20240101||ZZZ^Z01|1|P|2.5",
              sample("MDM-T02-02.hl7").replace(b"PID|1|987654321|987654321|", b"PID|1|||")]
    acks = await send(server.port, blocks)
    assert [a.get("MSA", 1) for a in acks] == ["AR", "AR", "AR", "AR", "AA", "AA"]
    assert [a.get("ERR", 3) or None for a in acks] == ["100", "204", "203", "101", None, None]
    events = await ingest.events(INBOUND, want=3, timeout=4)
    assert sorted(e.data["controlId"] for e in events) == ["1", "PS1-20080131160038"]


async def test_bad_frame_is_refused_and_connection_closed(ingest, server):
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"MSH|no start block\x1c\r")
    await writer.drain()
    data = await asyncio.wait_for(reader.read(4096), 10)
    assert b"MSA|AR" in data
    assert await asyncio.wait_for(reader.read(10), 10) == b""
    writer.close()
