"""Per-patient polling against the sandbox over HTTP, the real broker and PostgreSQL.

A watched patient's new or changed note is published once (also when a subscription notification
for the same version comes first or later); an unwatched patient's is not; a restart resumes from
the stored cursor; the tenant's request rate holds; one patient's failing search does not stop the
others; the checkpoint-inhibitor list is built from active orders (codes, text, Medication); a new
note reaches ehr-events within the poll interval + 1 s; the upload CLI reports what it could not
resolve.
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import time
from dataclasses import replace

import httpx
import pytest

from services.core.fhir import FhirClient
from services.core.integration import parse as parse_profile
from services.core.tenancy import Registry
from services.ingest.ehr import TenantEhr
from services.ingest.poll import metrics
from services.ingest.poll.runner import TenantPoller
from services.ingest.poll.settings import PollSettings
from services.ingest.receiver.notification import parse_notification
from services.ingest.store import polling
from tests.integration.ingest.notify import notification

pytestmark = pytest.mark.integration  # each test has its own tenant and topics: spread over xdist workers

MRN = "urn:oid:2.16.840.1.113883.3.9999.1"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def poll_tenant(base, watch_list: str = "uploaded", family: str = "fhir-server", **settings):
    profile = parse_profile(base.id, {"family": family, "triggers": ["patient-poll"], "watch_list": watch_list,
                                      "note_sources": ["ehr-fhir"], "results": ["fhir"]})
    return replace(base, integration=profile, settings={**base.settings, "poll_lookback_h": 1, **settings})


def note(patient: str, text: str = "note") -> dict:
    return {"resourceType": "DocumentReference", "status": "current", "subject": {"reference": f"Patient/{patient}"},
            "content": [{"attachment": {"contentType": "text/plain", "data": base64.b64encode(text.encode()).decode()}}]}


async def patient(client, mrn: str | None = None) -> str:
    body = {"resourceType": "Patient"}
    if mrn:
        body["identifier"] = [{"system": MRN, "value": mrn}]
    return (await client.create(body)).resource["id"]


async def watch(ingest, *patient_ids: str) -> None:
    async with ingest.pools.tx(ingest.tenant.id) as conn:
        await polling.replace_uploaded(conn, ingest.tenant.id, patient_ids, append=True)


def poller(ingest, tenant, ehr_for=None) -> TenantPoller:
    return TenantPoller(tenant, PollSettings.from_tenant(tenant), ingest.pools, ingest.publishers,
                        ehr_for or ingest.directory)


def published(events) -> list[tuple[str, str, str]]:
    return sorted((e.data["id"], e.data["versionId"], e.data["origin"]) for e in events)


class Recorder(httpx.AsyncHTTPTransport):
    """A real transport that notes when each request left (monotonic time) and its path."""

    def __init__(self):
        super().__init__()
        self.sent: list[tuple[float, str]] = []

    async def handle_async_request(self, request):
        self.sent.append((time.monotonic(), request.url.path))
        return await super().handle_async_request(request)


async def recording_ehr(ingest) -> tuple[Recorder, FhirClient]:
    recorder = Recorder()
    client = FhirClient(ingest.ehr.base_url, credentials=ingest.ehr.credentials, transport=recorder)
    await client.start()
    return recorder, client


async def test_watched_note_published_once_with_subscription_dedupe_unwatched_ignored(ingest):
    t, client = ingest.tenant.id, ingest.ehr.client
    tenant = poll_tenant(ingest.tenant)
    watched, unwatched = await patient(client), await patient(client)
    await watch(ingest, watched)
    first = (await client.create(note(watched, "first"))).resource
    await client.create(note(unwatched, "not watched"))
    p = poller(ingest, tenant)
    report = await p.run_round()
    assert (report.patients, report.published, report.duplicates, report.failed) == (1, 1, 0, 0)

    # The subscription path publishes a version first; the next round finds it and skips it.
    by_subscription = (await client.create(note(watched, "second"))).resource
    handled = await ingest.handler.handle(t, parse_notification(notification("sub-p", "event-notification", since=1,
                                                                              events=[(1, by_subscription)])))
    assert handled.published == 1
    report = await p.run_round()
    assert report.published == 0 and report.duplicates >= 1

    # Polling publishes a version first; the notification for it later publishes nothing.
    by_poll = (await client.create(note(watched, "third"))).resource
    assert (await p.run_round()).published == 1
    late = await ingest.handler.handle(t, parse_notification(notification("sub-p", "event-notification", since=2,
                                                                          events=[(2, by_poll)])))
    assert (late.published, late.duplicates) == (0, 1)

    # A changed note is a new version: published once, as an update.
    changed = (await client.update({**first, "description": "amended"})).resource
    assert (await p.run_round()).published == 1
    assert (await p.run_round()).published == 0

    events = await ingest.events(want=4, timeout=10)
    assert published(events) == sorted([(first["id"], "1", "poll"), (by_subscription["id"], "1", "subscription"),
                                        (by_poll["id"], "1", "poll"), (changed["id"], "2", "poll")])
    assert all(e.data["patient"] == watched and e.key == watched for e in events)
    assert [e.data["action"] for e in events if e.data["id"] == first["id"] and e.data["versionId"] == "2"] == ["update"]


async def test_restart_resumes_from_the_cursor_without_republishing(ingest):
    client = ingest.ehr.client
    tenant = poll_tenant(ingest.tenant, poll_overlap_s=0)
    pid = await patient(client)
    await watch(ingest, pid)
    notes = [(await client.create(note(pid, f"n{i}"))).resource for i in range(5)]
    assert (await poller(ingest, tenant).run_round()).published == 5
    async with ingest.pools.tx(tenant.id, readonly=True) as conn:
        [row] = await polling.watched(conn, tenant.id)
    newest = max(notes, key=lambda n: (n["meta"]["lastUpdated"], n["id"]))
    assert row.cursor_id == newest["id"]

    # A new process: new objects, state from PostgreSQL only. Its search starts at the cursor, so it
    # reads back only the newest note (already claimed), not the five.
    recorder, recording = await recording_ehr(ingest)
    try:
        async def ehr_for(_t):
            return TenantEhr(recording)
        restarted = poller(ingest, tenant, ehr_for)
        report = await restarted.run_round()
        assert (report.published, report.duplicates) == (0, 1)
        later = (await client.create(note(pid, "after restart"))).resource
        report = await restarted.run_round()
        assert (report.published, report.duplicates) == (1, 1)
    finally:
        await recording.close()
    events = await ingest.events(want=6, timeout=10)
    assert sorted(e.data["id"] for e in events) == sorted([n["id"] for n in notes] + [later["id"]])


async def test_request_rate_holds_per_tenant(ingest):
    client = ingest.ehr.client
    rate, burst = 4.0, 1
    tenant = poll_tenant(ingest.tenant, poll_rate_per_s=rate, poll_burst=burst, poll_concurrency=4)
    ids = [await patient(client) for _ in range(12)]
    await watch(ingest, *ids)
    recorder, recording = await recording_ehr(ingest)
    await recording.access_token()  # the token grant is not a poll request: out of the measured window
    recorder.sent.clear()
    try:
        async def ehr_for(_t):
            return TenantEhr(recording)
        report = await poller(ingest, tenant, ehr_for).run_round()
    finally:
        await recording.close()
    times = [at for at, path in recorder.sent if path.endswith("/DocumentReference")]
    assert report.failed == 0 and len(times) == report.requests == 12
    window = 1.0
    busiest = max(sum(1 for u in times if s <= u < s + window) for s in times)
    assert busiest <= burst + rate * window, f"{busiest} requests within {window} s at {rate}/s"
    span = times[-1] - times[0]
    assert span >= (len(times) - burst) / rate - 0.05  # 11 tokens refilled at 4/s: at least 2.75 s
    print(f"\n12 polls at {rate}/s: span {span:.2f} s, busiest 1 s window {busiest} requests")


async def test_a_failing_patient_does_not_stop_the_others_and_is_retried(ingest, capfd):
    t, client = ingest.tenant.id, ingest.ehr.client
    tenant = poll_tenant(ingest.tenant, poll_concurrency=2)
    good = [await patient(client) for _ in range(3)]
    refused = "no_such_patient"  # not a FHIR id: the EHR answers 400 for this patient's search
    await watch(ingest, *good, refused)
    notes = [(await client.create(note(pid))).resource for pid in good]
    before = metrics.ERRORS.labels(tenant=t, code="http_400")._value.get()
    p = poller(ingest, tenant)
    first = await p.run_round()
    assert (first.patients, first.published, first.errors) == (4, 3, {"http_400": 1})
    second = await p.run_round()
    assert second.errors == {"http_400": 1} and second.published == 0
    assert metrics.ERRORS.labels(tenant=t, code="http_400")._value.get() - before == 2
    async with ingest.pools.tx(t, readonly=True) as conn:
        row = await conn.fetchrow("SELECT last_error, consecutive_errors, polls FROM ingest_poll_patients "
                                  "WHERE tenant = $1 AND patient_id = $2", t, refused)
    assert (row["last_error"], row["consecutive_errors"], row["polls"]) == ("http_400", 2, 2)

    # 5xx on half the requests: every note still arrives, exactly once, within a few rounds.
    more = [(await client.create(note(pid, "during outage"))).resource for pid in good]
    await ingest.ehr.admin.set_faults(t, error_rate=0.5, error_status=503, retry_after_s=0)
    try:
        rounds, got = 0, 0
        while got < len(more) and rounds < 20:
            report = await p.run_round()
            got, rounds = got + report.published, rounds + 1
    finally:
        await ingest.ehr.admin.clear_faults(t)
    assert got == len(more), f"{got} of {len(more)} after {rounds} rounds"
    events = await ingest.events(want=6, timeout=10)
    assert sorted(e.data["id"] for e in events) == sorted(n["id"] for n in notes + more)
    logged = capfd.readouterr()
    assert "poll.patient_failed" in logged.out + logged.err
    assert refused not in logged.out + logged.err and good[0] not in logged.out + logged.err


async def test_checkpoint_inhibitor_watch_list_from_active_orders(ingest):
    client = ingest.ehr.client
    coded, by_text, by_medication, stopped, other = [await patient(client) for _ in range(5)]

    async def order(pid, status="active", concept=None, medication=None):
        body = {"resourceType": "MedicationRequest", "status": status, "intent": "order",
                "subject": {"reference": f"Patient/{pid}"}}
        if medication:
            body["medicationReference"] = {"reference": f"Medication/{medication}"}
        else:
            body["medicationCodeableConcept"] = concept
        await client.create(body)

    nivolumab = (await client.create({"resourceType": "Medication", "code": {
        "coding": [{"system": RXNORM, "code": "1597876"}]}})).resource["id"]
    await order(coded, concept={"coding": [{"system": RXNORM, "code": "1547545"}]})
    await order(by_text, concept={"text": "Keytruda 200 mg IV every 3 weeks"})
    await order(by_medication, medication=nivolumab)
    await order(stopped, status="stopped", concept={"coding": [{"system": RXNORM, "code": "1094833"}]})
    await order(other, concept={"coding": [{"system": RXNORM, "code": "6809"}], "text": "metformin"})

    codes_only = poll_tenant(ingest.tenant, watch_list="checkpoint-inhibitors", poll_watch_text=False)
    assert await poller(ingest, codes_only).refresh_watch_list() == 1
    tenant = poll_tenant(ingest.tenant, watch_list="checkpoint-inhibitors")
    report = await poller(ingest, tenant).run_round()
    assert report.refreshed == 3 and report.patients == 3
    async with ingest.pools.tx(tenant.id, readonly=True) as conn:
        watched = {w.patient_id for w in await polling.watched(conn, tenant.id)}
    assert watched == {coded, by_text, by_medication}


async def test_a_new_note_is_published_within_the_interval_plus_one_second(ingest):
    client = ingest.ehr.client
    interval = 1.0
    tenant = poll_tenant(ingest.tenant, poll_interval_s=interval)
    pid = await patient(client)
    await watch(ingest, pid)
    p = poller(ingest, tenant)
    await ingest.publishers.for_tenant(tenant.id)  # the service's producer is long-lived: started beforehand
    stop = asyncio.Event()
    task = asyncio.create_task(p.run(stop))
    try:
        start_rounds = metrics.ROUNDS.labels(tenant=tenant.id)._value.get()
        deadline = time.monotonic() + 10
        while metrics.ROUNDS.labels(tenant=tenant.id)._value.get() == start_rounds:  # no event for "a round ended"
            assert time.monotonic() < deadline, "no polling round completed"
            await asyncio.sleep(0.05)
        created = time.monotonic()
        doc = (await client.create(note(pid, "real time"))).resource
        [event] = await ingest.events(want=1, timeout=interval + 5, settle=0)
        latency = time.monotonic() - created
    finally:
        stop.set()
        await asyncio.gather(task)
    assert event.data["id"] == doc["id"] and event.data["origin"] == "poll"
    assert latency <= interval + 1.0, f"published {latency:.2f} s after the note was written"
    print(f"\npoll interval {interval} s: note published {latency:.2f} s after it was written")


async def run_cli(env: dict, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "services.cli", "poll", *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                env=env)
    out, err = await proc.communicate()
    return proc.returncode, out.decode(), err.decode()


async def test_upload_cli_resolves_identifiers_and_reports_unknown_ones(ingest, tmp_path):
    client = ingest.ehr.client
    by_id, by_mrn = await patient(client), await patient(client, "MRN-POLL-1")
    key = tmp_path / "ehr.pem"
    key.write_text(ingest.ehr.credentials.private_key_pem)
    tenant = replace(poll_tenant(ingest.tenant), ehr_base_url=ingest.ehr.base_url,
                     settings={**poll_tenant(ingest.tenant).settings, "ehr_client_id": ingest.ehr.credentials.client_id,
                               "ehr_private_key_file": str(key)})
    registry = Registry(tmp_path / "tenants.toml", [tenant])
    registry.save()
    env = {**os.environ, "VIGIL_TENANTS_FILE": str(registry.path), "VIGIL_ENV": "test", "COLUMNS": "400",
           "VIGIL_STATE_DIR": str(ingest.settings.state_dir)}
    upload = tmp_path / "watch.csv"
    upload.write_text("system,value\n"
                      f"Patient/{by_id}\n"
                      f"{MRN},MRN-POLL-1\n"
                      f"{MRN}|MRN-NOBODY\n"
                      "Patient/doesnotexist\n")
    code, out, err = await run_cli(env, "watchlist", "upload", "--tenant", tenant.id, str(upload), "--json")
    assert code == 1, err
    report = json.loads(out)
    assert (report["entries"], report["patients"], report["added"]) == (4, 2, 2)
    assert report["unresolved"] == [{"line": 4, "reason": "not-found"}, {"line": 5, "reason": "not-found"}]
    assert "line 4 (not-found)" in err and "line 5 (not-found)" in err and "MRN-NOBODY" not in err

    code, out, err = await run_cli(env, "status", "--tenant", tenant.id, "--json")
    assert code == 0, err
    status = json.loads(out)
    assert status["watched"] == 2 and {p["patient"] for p in status["patients"]} == {by_id, by_mrn}
    assert status["upload"]["unresolved"] == 2 and status["lastRound"] is None

    await poller(ingest, tenant).run_round()
    code, out, _ = await run_cli(env, "status", "--tenant", tenant.id, "--json")
    status = json.loads(out)
    assert status["lastRound"]["patients"] == 2 and status["failing"] == 0
    assert all(p["lastOk"] and p["lagSeconds"] < 60 for p in status["patients"])

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"patient": "ok-id"}\n{"identifier": "no-bar"}\nnot json {\n')
    code, _, err = await run_cli(env, "watchlist", "upload", "--tenant", tenant.id, str(bad))
    assert code == 2 and "line 2" in err and "nothing was stored" in err
    code, out, _ = await run_cli(env, "status", "--tenant", tenant.id, "--json")
    assert json.loads(out)["watched"] == 2

    # Replacing the list: a patient left out stops being watched.
    upload.write_text(f"Patient/{by_mrn}\n")
    code, out, err = await run_cli(env, "watchlist", "upload", "--tenant", tenant.id, str(upload), "--json")
    assert code == 0, err
    assert (json.loads(out)["kept"], json.loads(out)["dropped"]) == (1, 1)


@pytest.fixture
async def second_tenant(stack, ehr_server, ingest_admin, secrets):
    """Another tenant with its own EHR, PostgreSQL role and topics (the runner's fairness test)."""
    import uuid

    from services.core.tenancy import Tenant
    from services.core.tenantdb import provision_tenant_role, quote_ident, tenant_role
    from services.core.topics import ensure_tenant_topics

    tid = "t" + uuid.uuid4().hex[:12]
    admin = ehr_server.admin()
    await admin.create_tenant(tid)
    creds = await admin.new_client(tid, "vigil-test", ["system/*.cruds"])
    client = FhirClient(ehr_server.base(tid), credentials=creds)
    await client.start()
    async with ingest_admin.acquire() as conn:
        await provision_tenant_role(conn, tid, secrets)
    tenant = Tenant(id=tid, partitions=4, mode="active")
    await ensure_tenant_topics(stack, tenant)
    try:
        yield tenant, client, admin
    finally:
        await client.close()
        await admin.__aexit__(None, None, None)
        async with ingest_admin.acquire() as conn:
            await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
                               tenant_role(tid))
            try:
                await conn.execute(f"DROP ROLE IF EXISTS {quote_ident(tenant_role(tid))}")
            except Exception:
                pass


async def test_a_slow_tenant_does_not_starve_another(ingest, second_tenant):
    from services.ingest.poll.runner import PollRunner

    fast_base, fast_client, fast_admin = second_tenant
    slow = poll_tenant(ingest.tenant, poll_rate_per_s=2, poll_burst=1, poll_interval_s=0.5)
    fast = poll_tenant(fast_base, poll_rate_per_s=50, poll_interval_s=0.5)
    slow_ids = [await patient(ingest.ehr.client) for _ in range(8)]
    fast_ids = [await patient(fast_client) for _ in range(3)]
    await watch(ingest, *slow_ids)
    async with ingest.pools.tx(fast.id) as conn:
        await polling.replace_uploaded(conn, fast.id, fast_ids)
    await ingest.ehr.admin.set_faults(slow.id, latency_ms=300)  # and its EHR answers slowly
    clients = {slow.id: ingest.ehr.client, fast.id: fast_client}

    async def ehr_for(t):
        return TenantEhr(clients[t])
    runner = PollRunner(Registry(ingest.registry.path, [slow, fast]), ingest.pools, ingest.publishers, ehr_for)
    assert sorted(p.tenant.id for p in runner.pollers) == sorted([slow.id, fast.id])
    rounds = {t: metrics.ROUNDS.labels(tenant=t)._value.get() for t in (slow.id, fast.id)}
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while metrics.ROUNDS.labels(tenant=fast.id)._value.get() - rounds[fast.id] < 3:
            assert time.monotonic() < deadline, "the fast tenant did not complete 3 rounds"
            await asyncio.sleep(0.05)
        slow_done = metrics.ROUNDS.labels(tenant=slow.id)._value.get() - rounds[slow.id]
        fast_round = metrics.ROUND_SECONDS.labels(tenant=fast.id)._value.get()
        fast_note = (await fast_client.create(note(fast_ids[0], "fast tenant"))).resource
        [event] = [e for e in await read_fast(ingest, fast, 1) if e.data["id"] == fast_note["id"]]
    finally:
        await runner.stop()
        await ingest.ehr.admin.clear_faults(slow.id)
    assert slow_done == 0, "the slow tenant's first round (8 polls at 2/s, 300 ms each) cannot be over yet"
    assert fast_round < 0.5 and event.data["origin"] == "poll"


async def read_fast(ingest, tenant, want: int):
    from services.core.events import decode
    from tests.integration.ingest.conftest import read_topic

    return [decode(r.key, r.value, r.headers)
            for r in await read_topic(ingest.settings, tenant.topic("ehr-events"), want, timeout=5, settle=0)]


async def test_the_ingest_service_polls_and_resumes_after_sigkill(ingest, tmp_path):
    """`python -m services.ingest.app` runs the poller for a patient-poll tenant; killed with SIGKILL
    and started again, it goes on from the stored cursors: nothing is published twice."""
    import signal

    from tests.fixtures.ports import free_port

    client = ingest.ehr.client
    key = tmp_path / "ehr.pem"
    key.write_text(ingest.ehr.credentials.private_key_pem)
    base = poll_tenant(ingest.tenant, poll_interval_s=0.5)
    tenant = replace(base, ehr_base_url=ingest.ehr.base_url,
                     settings={**base.settings, "ehr_client_id": ingest.ehr.credentials.client_id,
                               "ehr_private_key_file": str(key)})
    registry = Registry(tmp_path / "tenants.toml", [tenant])
    registry.save()
    stack = ingest.settings
    env = {**os.environ, "VIGIL_KAFKA_BOOTSTRAP": stack.kafka.bootstrap, "VIGIL_POSTGRES_DSN": stack.postgres_dsn,
           "VIGIL_REDIS_URL": stack.redis_url, "VIGIL_TENANTS_FILE": str(registry.path), "VIGIL_ENV": "test",
           "VIGIL_LOG_LEVEL": "warning", "VIGIL_INGEST_MLLP_PORT": str(free_port()),
           "VIGIL_INGEST_HTTP_PORT": str(free_port()), "VIGIL_INGEST_WATCHDOG": "false"}
    pid = await patient(client)
    await watch(ingest, pid)

    async def start():
        return await asyncio.create_subprocess_exec(sys.executable, "-m", "services.ingest.app", env=env)

    proc = await start()
    try:
        first = (await client.create(note(pid, "before the kill"))).resource
        assert [e.data["id"] for e in await ingest.events(want=1, timeout=30, settle=0)] == [first["id"]]
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        second = (await client.create(note(pid, "while down"))).resource
        proc = await start()
        events = await ingest.events(want=2, timeout=30, settle=2.0)  # a re-publish would show in the settle
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except asyncio.TimeoutError:
                proc.kill()
    assert sorted(e.data["id"] for e in events) == sorted([first["id"], second["id"]])
    assert all(e.data["origin"] == "poll" for e in events)

    # A setting the poller cannot honour stops the service at start-up, naming it.
    registry.update(tenant.id, settings={**tenant.settings, "poll_rate_per_s": -1})
    registry.save()
    bad = await asyncio.create_subprocess_exec(sys.executable, "-m", "services.ingest.app", env=env,
                                               stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(bad.communicate(), 60)
    assert bad.returncode != 0 and b"settings.poll_rate_per_s" in out + err
