"""The HL7 v2 outbound results channel against the real broker, PostgreSQL, Redis, the EHR sandbox
and a scripted MLLP receiver (``tests/fixtures/hl7_receiver.py``).

Acceptance: the channel survives a receiver that answers AE then AA, hangs, or is down: every
result is delivered exactly once (counted by MSH-10 among the receiver's AA answers) after
recovery (retry topics) or replay (``vigil dlq replay``, in the outage test: 60 s with
``VIGIL_TEST_HL7OUT_OUTAGE_S=60``, the suite uses 5 s)."""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
import sys
from pathlib import Path

import hl7
import pytest

from services.core.bus import ConsumerTuning, RetryPolicy, ensure_stage_topics
from services.core.bus.service import StageHost
from services.core.integration import parse as parse_profile
from services.core.tenancy import Registry, Tenant
from services.hl7out import app as hl7out_app
from services.hl7out.deps import READ_SCOPE, Deps
from services.hl7out.message import control_id
from tests.fixtures.hl7_receiver import Hl7Receiver
from tests.fixtures.kafka import wait_idle, wait_records
from tests.fixtures.tls import make_self_signed
from tests.fixtures.writeback import new_patient

MRN_SYSTEM = "urn:oid:2.16.840.1.113883.19.5"
FAST_TUNING = ConsumerTuning(poll_timeout_ms=100, commit_interval_ms=200, handler_timeout_s=10.0, liveness_stall_s=20.0)
#: What the stage process reads from its environment, shrunk for tests: one quick try, then
#: retry.1 after 1 s and retry.2 after 2 s, then the dead-letter queue (~3 s in all).
SHORT_ENV = {"VIGIL_RETRY_BACKOFF_S": "1,2", "VIGIL_RETRY_QUICK_ATTEMPTS": "1"}
VIGIL = Path(sys.executable).with_name("vigil")
#: How long the receiver is down in the outage test (``VIGIL_TEST_HL7OUT_OUTAGE_S=60`` for the full
#: minute). Past the ~3 s that SHORT_ENV takes to dead-letter, nothing in the channel depends on the
#: length: the suite uses 5 s.
OUTAGE_S = float(os.environ.get("VIGIL_TEST_HL7OUT_OUTAGE_S", "5"))


class Hl7OutTenant:
    """The ``wb_tenant`` handle (tenant role, Redis user, EHR tenant, registry) with the hl7out stage."""

    def __init__(self, wb, deps: Deps):
        self.wb, self.deps = wb, deps

    def profile(self, receiver: Hl7Receiver, *, results=("hl7v2",), message="ORU^R01", timeout_s=1.0,
                tls=False, ca_file="", note_sources=("ehr-fhir", "document-store"), triggers=None,
                mode="active") -> Tenant:
        table = {"family": "hl7-only" if "fhir" not in results else "custom", "results": list(results),
                 "note_sources": list(note_sources), "ehr_accepts": [],
                 "triggers": list(triggers or (["backport-topic", "hl7v2-feed"] if "ehr-fhir" in note_sources
                                               else ["hl7v2-feed"])),
                 "hl7_out": {"host": "127.0.0.1" if not tls else "localhost", "port": receiver.port,
                             "message": message, "timeout_s": timeout_s, "tls": tls, "ca_file": ca_file,
                             "receiving_application": "ENGINE", "receiving_facility": "HOSP"}}
        if "fhir" in results:
            table["ehr_accepts"] = ["Task"]
        tenant = Tenant(id=self.wb.tenant, mode=mode, partitions=4, ehr_base_url=self.wb.ehr.base_url,
                        integration=parse_profile(self.wb.tenant, table))
        Registry(self.wb.path, [tenant]).save()
        return tenant

    @contextlib.asynccontextmanager
    async def host(self, env: dict | None = None):
        retry = RetryPolicy(quick_wait_initial_s=0.01, quick_wait_max_s=0.05).with_env(env or SHORT_ENV)
        specs = hl7out_app.specs(self.deps, retry=retry, tuning=FAST_TUNING)
        await ensure_stage_topics(self.wb.stack, Tenant(id=self.wb.tenant), specs)
        host = StageHost(self.wb.settings, specs, port=0, host="127.0.0.1", tenants=[self.wb.tenant])
        await host.start()
        stop = asyncio.Event()
        task = asyncio.create_task(host.run(stop))
        try:
            yield host
        finally:
            stop.set()
            await task
            await host.stop()

    async def patient(self, mrn: str) -> str:
        pid = new_patient()
        await self.wb.ehr.client.update({"resourceType": "Patient", "id": pid,
                                         "identifier": [{"system": MRN_SYSTEM, "value": mrn,
                                                         "type": {"coding": [{"code": "MR"}]}}],
                                         "name": [{"family": "Test", "given": ["Pat"]}]})
        return pid

    def ctrl(self, event) -> str:
        return control_id(self.wb.tenant, event.data["decisionId"])


@pytest.fixture
async def h7(wb_tenant, wb_secrets):
    client = await wb_tenant.ehr.new_client("vigil-hl7out", READ_SCOPE.split())
    deps = Deps(wb_tenant.settings, wb_secrets, pools=wb_tenant.pools, clients={wb_tenant.tenant: client})
    yield Hl7OutTenant(wb_tenant, deps)
    await deps.close()


@pytest.fixture
async def receiver():
    r = Hl7Receiver()
    await r.start()
    yield r
    await r.stop()


def obx(text: str, code: str) -> list[str]:
    msg = hl7.parse(text)
    return [msg.unescape(str(o[5])) for o in msg.segments("OBX") if str(o[3][0][0]) == code]


async def test_a_decision_reaches_the_receiver_as_one_oru(h7, receiver):
    h7.profile(receiver)
    pid = await h7.patient("MRN-7781")
    doc = await h7.wb.note(pid)
    ev = h7.wb.decision(pid, doc, kind="urgent-task", grade=3)
    silent = h7.wb.decision(pid, doc, n=1, mode="silent", write=False)
    async with h7.host() as host:
        await h7.wb.publish("actions", [ev, silent])
        await receiver.wait(lambda r: r.accepted())
        await wait_idle(h7.wb.stack, h7.wb.tenant, host.specs)
    assert receiver.accepted() == {h7.ctrl(ev): 1}, "one message, the silent decision not sent"
    text = receiver.received[0].text
    msg = hl7.parse(text)
    assert str(msg.segment("MSH")[9]) == "ORU^R01^ORU_R01" and str(msg.segment("MSH")[10]) == h7.ctrl(ev)
    pid3 = msg.segment("PID")[3][0]
    assert (str(pid3[0]), str(pid3[3]), str(pid3[4])) == ("MRN-7781", "&2.16.840.1.113883.19.5&ISO", "MR")
    assert obx(text, "finding")[0].startswith("colitis^") and obx(text, "ctcae-grade") == ["3"]
    assert obx(text, "evidence-quote") == ["6-7 watery stools per day"]
    assert obx(text, "source-note") == [f"DocumentReference/{doc['id']}/_history/{doc['meta']['versionId']}"]
    assert "AI-generated and unverified" in msg.unescape(str(msg.segment("NTE")[3]))
    assert await h7.wb.count("Task", patient=pid) == 0, "an hl7v2-only profile writes nothing to the EHR"


async def test_a_tenant_without_the_hl7_channel_sends_nothing(h7, receiver):
    h7.profile(receiver, results=("fhir",))
    pid = await h7.patient("MRN-1")
    ev = h7.wb.decision(pid, await h7.wb.note(pid))
    async with h7.host() as host:
        await h7.wb.publish("actions", [ev])
        await wait_idle(h7.wb.stack, h7.wb.tenant, host.specs)
    assert receiver.received == [] and receiver.connections == 0


async def test_a_store_note_is_sent_with_the_feeds_identifiers_without_asking_the_ehr(h7, receiver, admin_pool):
    """A note from the HL7 feed: PID-3 comes from the document store's patient index; the EHR is
    never called (the profile has no ehr-fhir note source; the client would fail the test)."""
    from services.ingest.store import schema as ingest_schema

    await ingest_schema.migrate(admin_pool)
    h7.profile(receiver, note_sources=("document-store",), message="MDM^T02")

    class NoEhr:
        async def client(self, tenant):
            raise AssertionError("the EHR must not be asked for a document-store note")

    h7.deps.client = NoEhr().client
    identifiers = [{"system": "urn:vigil:hosp:patient:HOSP", "value": "H|55", "type": {"coding": [{"code": "MR"}]}}]
    sealed = await h7.deps.keyring.encrypt(h7.wb.tenant, json.dumps(identifiers).encode(), "patient-index")
    text_sealed = await h7.deps.keyring.encrypt(h7.wb.tenant, b"note", "note-text")
    async with h7.wb.pools.tx(h7.wb.tenant) as conn:
        await conn.execute("INSERT INTO ingest_patients (tenant, patient_key, patient_id, identifiers_sealed, "
                           "last_event) VALUES ($1, 'pk1', 'p-store', $2, 'MDM^T02')", h7.wb.tenant, sealed)
        await conn.execute("INSERT INTO ingest_documents (tenant, id, version, identifier_system, identifier_value, "
                           "facility, control_id, patient_key, patient_id, status, text_sealed, body_sha256) VALUES "
                           "($1, 'sdoc1', 1, 'urn:x', 'TXA-0001', 'HOSP', 'M1', 'pk1', 'p-store', 'text', $2, 'h')",
                           h7.wb.tenant, text_sealed)
    ev = h7.wb.decision("p-store", {"id": "sdoc1", "meta": {"versionId": "1"}})
    ev.data["document"] = {"id": "sdoc1", "versionId": "1", "source": "store",
                           "identifier": {"system": "urn:x", "value": "TXA-0001"}}
    async with h7.host():
        await h7.wb.publish("actions", [ev])
        await receiver.wait(lambda r: r.accepted())
    msg = hl7.parse(receiver.received[0].text)
    assert str(msg.segment("MSH")[9]) == "MDM^T02^MDM_T02"
    pid3 = msg.segment("PID")[3][0]
    assert (msg.unescape(str(pid3[0])), str(pid3[3]), str(pid3[4])) == ("H|55", "HOSP", "MR")
    assert str(msg.segment("TXA")[13]) == "TXA-0001"


async def test_survives_ae_then_aa_a_hang_and_a_short_outage_each_result_delivered_once(h7, receiver):
    """Recovery through the retry topics: no replay needed."""
    h7.profile(receiver, timeout_s=0.5)
    people = [await h7.patient(f"MRN-{i}") for i in range(3)]
    events = [h7.wb.decision(pid, await h7.wb.note(pid), episode=f"r{i}") for i, pid in enumerate(people)]
    async with h7.host(env={"VIGIL_RETRY_BACKOFF_S": "1,2,3", "VIGIL_RETRY_QUICK_ATTEMPTS": "2"}) as host:
        receiver.script("AE", "AA")                      # the first message refused once, then accepted
        await h7.wb.publish("actions", events[:1])
        await receiver.wait(lambda r: h7.ctrl(events[0]) in r.accepted())
        receiver.script("hang")                          # no ACK: timeout, the connection is dropped
        await h7.wb.publish("actions", events[1:2])
        await receiver.wait(lambda r: h7.ctrl(events[1]) in r.accepted())
        await receiver.stop()                            # down while the third result arrives
        await h7.wb.publish("actions", events[2:])
        await _failed_sends(h7, "connect_failed", at_least=1)  # the stage met the refused port
        await receiver.start()
        await receiver.wait(lambda r: h7.ctrl(events[2]) in r.accepted(), timeout=30)
        await wait_idle(h7.wb.stack, h7.wb.tenant, host.specs)
    assert receiver.accepted() == {h7.ctrl(e): 1 for e in events}
    answers = [(r.control_id, r.answer) for r in receiver.received]
    assert answers[:2] == [(h7.ctrl(events[0]), "AE"), (h7.ctrl(events[0]), "AA")]
    assert (h7.ctrl(events[1]), "hang") in answers
    sent = {r.control_id: r.text for r in receiver.received if r.answer != "AA"}
    for r in receiver.received:  # a resend is byte for byte the message first sent
        assert r.text == sent.get(r.control_id, r.text)


async def test_connection_is_reused_and_tls_verified(h7, tmp_path):
    cert, key = make_self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    receiver = Hl7Receiver(ssl_context=server_ctx)
    await receiver.start()
    try:
        h7.profile(receiver, tls=True, ca_file=str(cert))
        people = [await h7.patient(f"MRN-T{i}") for i in range(4)]
        events = [h7.wb.decision(pid, await h7.wb.note(pid), episode=f"t{i}") for i, pid in enumerate(people)]
        async with h7.host():
            await h7.wb.publish("actions", events)
            await receiver.wait(lambda r: len(r.accepted()) == 4)
        assert receiver.accepted() == {h7.ctrl(e): 1 for e in events}
        assert receiver.connections == 1, "one connection per tenant, reused for every message"
    finally:
        await receiver.stop()


async def test_an_untrusted_certificate_is_never_sent_to(h7, tmp_path):
    cert, key = make_self_signed(tmp_path)
    other, _ = make_self_signed(tmp_path, common_name="other")  # a CA the receiver's certificate is not from
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    receiver = Hl7Receiver(ssl_context=server_ctx)
    await receiver.start()
    try:
        h7.profile(receiver, tls=True, ca_file=str(other))
        pid = await h7.patient("MRN-X")
        ev = h7.wb.decision(pid, await h7.wb.note(pid))
        async with h7.host():
            await h7.wb.publish("actions", [ev])
            await _dead_letters(h7, 1)
        assert receiver.received == []
    finally:
        await receiver.stop()


async def _failed_sends(h7, code: str, at_least: int, timeout: float = 30.0) -> None:
    """Wait until the stage counted ``at_least`` sends failing with ``code`` (its metric)."""
    from prometheus_client import REGISTRY

    def value() -> float:
        return REGISTRY.get_sample_value("vigil_hl7out_messages_total", {
            "tenant": h7.wb.tenant, "message": "ORU^R01", "outcome": code}) or 0.0

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while value() < at_least:
        if loop.time() > deadline:
            raise AssertionError(f"no {code} send within {timeout:.0f} s")
        await asyncio.sleep(0.05)


async def _dead_letters(h7, n: int, timeout: float = 90.0) -> list:
    from services.core.bus import dlq_topic

    return await wait_records(h7.wb.stack, dlq_topic(h7.wb.tenant), lambda records: len(records) >= n, timeout,
                              what=f"{n} dead letters")


async def _vigil(env: dict, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(str(VIGIL), *args, env={**os.environ, **env},
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    return process.returncode, out.decode(), err.decode()


@pytest.mark.xdist_group("hl7out-outage")
@pytest.mark.timeout(240)
async def test_an_outage_dead_letters_then_replay_delivers_each_result_once(h7, receiver, control):
    """The receiver is down for OUTAGE_S (60 s in the acceptance run, real time). With VIGIL_RETRY_BACKOFF_S=1,2 and one quick try,
    the results go to the dead-letter queue within seconds; once the receiver is back, `vigil dlq
    replay --stage hl7out` delivers each exactly once; a second replay finds nothing."""
    control.tenants.append(h7.wb.tenant)
    h7.profile(receiver, timeout_s=1.0)
    people = [await h7.patient(f"MRN-O{i}") for i in range(3)]
    events = [h7.wb.decision(pid, await h7.wb.note(pid), episode=f"o{i}") for i, pid in enumerate(people)]
    env = {**control.env(control.token(h7.wb.tenant, sub="oncall")), "VIGIL_LOG_LEVEL": "warning"}
    loop = asyncio.get_running_loop()
    async with h7.host(env=SHORT_ENV) as host:
        await receiver.stop()
        down_at = loop.time()
        await h7.wb.publish("actions", events)
        dead = await _dead_letters(h7, 3)
        assert len(dead) == 3 and receiver.received == []
        await asyncio.sleep(max(0.0, OUTAGE_S - (loop.time() - down_at)))  # the rest of the outage
        await receiver.start()
        code, out, err = await _vigil(env, "dlq", "replay", "--tenant", h7.wb.tenant, "--stage", "hl7out",
                                      "--rate", "100")
        assert code == 0, err
        assert "3 sent" in out
        await receiver.wait(lambda r: len(r.accepted()) == 3, timeout=60)
        await wait_idle(h7.wb.stack, h7.wb.tenant, host.specs)
    assert receiver.accepted() == {h7.ctrl(e): 1 for e in events}
    assert len(receiver.received) == 3, "nothing was sent twice"
    code, out, _ = await _vigil(env, "dlq", "replay", "--tenant", h7.wb.tenant, "--stage", "hl7out", "--dry-run",
                                "--json")
    assert code == 1 and json.loads(out.strip().splitlines()[-1])["total"] == "0"



async def test_the_kill_switch_keeps_results_for_a_replay_that_sends_each_once(h7, receiver):
    from services.core import modes
    from tests.integration.writeback.test_writeback import forget_processed

    h7.profile(receiver)
    h7.deps.modes = modes.ModeStore(h7.wb.pools, h7.wb.path, ttl_s=0.0)  # no cache: the switch acts at once
    pid = await h7.patient("MRN-K")
    ev = h7.wb.decision(pid, await h7.wb.note(pid))
    await h7.wb.modes.kill(h7.wb.tenant, "writeback", actor="test", reason="test")
    async with h7.host() as host:
        await h7.wb.publish("actions", [ev])
        await _dead_letters(h7, 1)
        assert receiver.received == [], "nothing is sent while the results agent is killed"
        await h7.wb.modes.kill(h7.wb.tenant, "writeback", on=False, actor="test")
        await forget_processed(h7.wb)
        await h7.wb.publish("actions", [ev])  # what `vigil dlq replay` does: the same event again
        await receiver.wait(lambda r: r.accepted())
        await wait_idle(h7.wb.stack, h7.wb.tenant, host.specs)
    assert receiver.accepted() == {h7.ctrl(ev): 1} and len(receiver.received) == 1
