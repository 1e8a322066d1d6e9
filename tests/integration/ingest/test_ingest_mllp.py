"""HL7 v2 over MLLP against the real broker, PostgreSQL and the EHR sandbox."""
from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest
from hl7.mllp import open_hl7_connection

from services.ingest.hl7.parse import parse
from services.ingest.mllp.server import MllpServer
from services.ingest.store import hl7_log

SAMPLES = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "hl7v2"
ACCEPTED = ["MDM-T02-02.hl7", "MDM-T02-03.hl7", "LRI_2.0-NG_CBC_Typ_Message.hl7", "ADT-A01-01.hl7",
            "ADT-A03-01.hl7", "ADT-A08-01.hl7", "SIU-S12-01.hl7", "SIU-S14-01.hl7", "SIU-S15-01.hl7"]
#: sample -> (ACK code, ERR-3): no TX/FT note text -> AE 102; no facility in MSH-4/MSH-6 -> AR 204.
REFUSED = {"MDM-T02-01.hl7": ("AE", "102"), "ORU-R01-01.hl7": ("AE", "102"), "LAB-ORU-1.hl7": ("AR", "204")}


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


async def test_samples_ack_and_appear_once(ingest, server):
    names = ACCEPTED + list(REFUSED)
    acks = await send(server.port, [sample(n) for n in names])
    codes = {n: (a.get("MSA", 1), a.get("ERR", 3) or None) for n, a in zip(names, acks)}
    assert all(codes[n] == ("AA", None) for n in ACCEPTED), codes
    assert all(codes[n] == REFUSED[n] for n in REFUSED), codes
    for name, ack in zip(names, acks):
        assert ack.get("MSA", 2) == parse(sample(name)).header.control_id

    # Resend everything: duplicates are acknowledged AA again and publish nothing new.
    again = await send(server.port, [sample(n) for n in ACCEPTED])
    assert [a.get("MSA", 1) for a in again] == ["AA"] * len(ACCEPTED)

    events = await ingest.events(want=30, timeout=8)
    by_type: dict = {}
    for e in events:
        assert e.type == "vigil.ehr.resource-changed" and e.data["origin"] == "hl7"
        by_type.setdefault(e.data["resourceType"], []).append(e)
    keys = [(e.data["resourceType"], e.data["id"], e.data["versionId"]) for e in events]
    assert len(keys) == len(set(keys)), "a resource version was published twice"
    # 3 notes, one Encounter in 3 versions (A01, A03, A08), one Appointment in 3 versions (S12, S14, S15)
    assert len(by_type["DocumentReference"]) == 3
    assert sorted(e.data["versionId"] for e in by_type["Encounter"]) == ["1", "2", "3"]
    assert sorted(e.data["versionId"] for e in by_type["Appointment"]) == ["1", "2", "3"]
    for e in events:
        assert "text" not in e.data and e.key == e.data["patient"]
        assert e.data["patient"]

    # The notes are in the EHR with their text; the patient is referenced.
    doc_event = by_type["DocumentReference"][0]
    client = ingest.ehr.client
    docs = await client.search("DocumentReference", {"identifier": "urn:vigil:hl7:sfac:document|2RWRVAJ627408"})
    assert len(docs) == 1
    text = base64.b64decode(docs[0]["content"][0]["attachment"]["data"]).decode()
    assert text.startswith("Toilet cylinder crackers")
    assert docs[0]["subject"]["reference"].startswith("Patient/")
    assert doc_event.data["lastUpdated"]
    appointment = (await client.search("Appointment", {"identifier": "urn:vigil:hl7:ghhsfacility:appointment|12345"}))
    assert len(appointment) == 1 and appointment[0]["status"] == "cancelled"


async def test_raw_message_is_kept_encrypted(ingest, server):
    raw = sample("MDM-T02-02.hl7")
    [ack] = await send(server.port, [raw])
    assert ack.get("MSA", 1) == "AA"
    async with ingest.pools.tx(ingest.tenant.id, readonly=True) as conn:
        rows = await hl7_log.raw_messages(conn, ingest.tenant.id)
    assert len(rows) == 1
    blob = bytes(rows[0]["raw"])
    assert b"Toilet cylinder" not in blob and b"PROSOLV" not in blob
    assert await ingest.keyring.decrypt(ingest.tenant.id, blob, "hl7-raw") == raw


async def test_reused_control_id_with_other_content_is_refused(ingest, server):
    first = sample("MDM-T02-02.hl7")
    changed = first.replace(b"Toilet cylinder", b"Different words")
    acks = await send(server.port, [first, changed])
    assert [a.get("MSA", 1) for a in acks] == ["AA", "AE"]
    assert acks[1].get("ERR", 3) == "205"
    events = await ingest.events(want=2, timeout=5)
    assert sorted(e.data["resourceType"] for e in events) == ["DocumentReference", "Patient"]


async def test_bad_hl7_gets_ar_and_nothing_is_published(ingest, server):
    blocks = [b"garbage that is not hl7", b"MSH|^~\\&|A|XYZHOSPITAL|B|C|20240101||ZZZ^Z01|1|P|2.5",
              b"MSH|^~\\&|A|UNKNOWNFAC|B|NOWHERE|20240101||MDM^T02|2|P|2.5\rPID|1||X",
              sample("MDM-T02-02.hl7").replace(b"PID|1|987654321|987654321|", b"PID|1|||")]
    acks = await send(server.port, blocks)
    assert [a.get("MSA", 1) for a in acks] == ["AR", "AR", "AR", "AE"]
    assert [a.get("ERR", 3) for a in acks] == ["100", "200", "204", "101"]
    assert await ingest.events(want=1, timeout=3, settle=0) == []


async def test_broker_or_ehr_failure_gives_ae_and_resend_succeeds(ingest, server):
    await ingest.ehr.admin.set_faults(ingest.tenant.id, error_rate=1.0)
    try:
        [ack] = await send(server.port, [sample("MDM-T02-03.hl7")])
    finally:
        await ingest.ehr.admin.clear_faults(ingest.tenant.id)
    assert ack.get("MSA", 1) == "AE" and ack.get("ERR", 3) == "207"
    assert await ingest.events(want=1, timeout=2, settle=0) == []
    [ack] = await send(server.port, [sample("MDM-T02-03.hl7")])
    assert ack.get("MSA", 1) == "AA"
    assert len(await ingest.events(want=2, timeout=5)) == 2


async def test_bad_frame_is_refused_and_connection_closed(ingest, server):
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"MSH|no start block\x1c\r")
    await writer.drain()
    data = await asyncio.wait_for(reader.read(4096), 10)
    assert b"MSA|AR" in data
    assert await asyncio.wait_for(reader.read(10), 10) == b""
    writer.close()
