"""`vigil subscribe` (create/repair), backfill (resumable, idempotent with real time), the watchdog."""
from __future__ import annotations

import asyncio
import base64
from datetime import datetime, timedelta, timezone

from services.ingest import backfill
from services.ingest.ehr import TenantEhr
from services.ingest.receiver.notification import parse_notification
from services.ingest.receiver.watchdog import Watchdog
from services.ingest.subscribe import TOPICS, ensure_subscriptions
from tests.integration.ingest.notify import notification
from tests.fixtures.ports import free_port


def note(patient: str, i: int) -> dict:
    return {"resourceType": "DocumentReference", "status": "current", "subject": {"reference": f"Patient/{patient}"},
            "content": [{"attachment": {"contentType": "text/plain", "data": base64.b64encode(b"n %d" % i).decode()}}]}


async def wait_status(client, sub: str, status: str, timeout: float = 30.0) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        current = await client.read("Subscription", sub)
        if current.get("status") == status or asyncio.get_running_loop().time() > deadline:
            return current
        await asyncio.sleep(0.3)


async def test_subscribe_creates_then_repairs(ingest):
    client = ingest.ehr.client
    # Nothing listens on this endpoint: the EHR's handshakes fail and the Subscriptions go to error.
    endpoint, header = f"http://127.0.0.1:{free_port()}/notify/{ingest.tenant.id}", "Authorization: Bearer abc"
    first = await ensure_subscriptions(client, endpoint, header)
    assert [r["action"] for r in first] == ["created"] * len(TOPICS)
    assert (await wait_status(client, first[0]["id"], "error"))["status"] == "error"
    await client.update({**(await client.read("Subscription", first[1]["id"])), "channel": {
        **(await client.read("Subscription", first[1]["id"]))["channel"], "header": ["Authorization: Bearer stale"]}})
    for row in first[2:]:
        await wait_status(client, row["id"], "error")
    repaired = await ensure_subscriptions(client, endpoint, header)
    assert [r["action"] for r in repaired] == ["repaired"] * len(TOPICS)
    assert (await client.read("Subscription", first[0]["id"]))["status"] in ("requested", "error")
    fixed = await client.read("Subscription", first[1]["id"])
    assert fixed["channel"]["header"] == [header] and fixed["criteria"] == TOPICS[1].url



async def test_backfill_pages_resumes_and_skips_what_real_time_published(ingest):
    t, client = ingest.tenant.id, ingest.ehr.client
    since = datetime.now(timezone.utc) - timedelta(seconds=5)
    patient = (await client.create({"resourceType": "Patient"})).resource["id"]
    docs = [(await client.create(note(patient, i))).resource for i in range(7)]
    # one of them already went through the subscription path
    result = await ingest.handler.handle(t, parse_notification(notification("sub-b", "event-notification", since=1,
                                                                            events=[(1, docs[2])])))
    assert result.published == 1
    ehr = TenantEhr(client)
    assert await backfill.count(ehr, since) == 7
    partial = await backfill.run(t, since, ehr, ingest.pools, ingest.publishers, page_size=3, max_pages=1)
    assert (partial.seen, partial.published, partial.resumed) == (3, 2, False)  # docs[2] skipped
    rest = await backfill.run(t, since, ehr, ingest.pools, ingest.publishers, page_size=3)
    assert rest.resumed and rest.seen == 7 and rest.published == 6
    again = await backfill.run(t, since, ehr, ingest.pools, ingest.publishers, page_size=3)
    assert again.published == 6  # nothing new
    events = await ingest.events(want=8, timeout=5)
    assert sorted(e.data["id"] for e in events) == sorted(d["id"] for d in docs)
    assert sorted(e.data["origin"] for e in events) == ["backfill"] * 6 + ["subscription"]


async def test_watchdog_reactivates_errored_subscription_and_recovers_missed_events(ingest):
    t, client = ingest.tenant.id, ingest.ehr.client
    # The receiver is unreachable: the handshake fails, the Subscription goes to error, and the
    # notes written meanwhile are numbered by the EHR but never delivered.
    [row] = await ensure_subscriptions(client, f"http://127.0.0.1:{free_port()}/notify/{t}",
                                       "Authorization: Bearer x", TOPICS[:1])
    sub = row["id"]
    await ingest.handler.handle(t, parse_notification(notification(sub, "handshake", since=0, status="requested")))
    assert (await wait_status(client, sub, "error"))["status"] == "error"
    patient = (await client.create({"resourceType": "Patient"})).resource["id"]
    missed = [(await client.create(note(patient, i))).resource for i in range(2)]
    dog = Watchdog(ingest.registry, ingest.pools, ingest.handler, ingest.directory, heartbeat_s=60)
    assert await dog.check_tenant(t) == []  # heard from it just now: not checked yet
    [report] = await dog.check_tenant(t, now=datetime.now(timezone.utc) + timedelta(minutes=5))
    assert report["status"] == "error" and report["reactivated"] and report["recovered"] == 2
    assert (await client.read("Subscription", sub))["status"] in ("requested", "error")
    events = await ingest.events(want=2, timeout=5)
    assert sorted(e.data["id"] for e in events) == sorted(d["id"] for d in missed)
    assert sorted(e.data["eventNumber"] for e in events) == [1, 2]


async def test_watchdog_marks_a_subscription_the_ehr_no_longer_has_once_and_checks_the_others(ingest, capfd):
    t, client = ingest.tenant.id, ingest.ehr.client
    rows = await ensure_subscriptions(client, f"http://127.0.0.1:{free_port()}/notify/{t}",
                                      "Authorization: Bearer x", TOPICS[:2])
    for row in rows:
        await ingest.handler.handle(t, parse_notification(notification(row["id"], "handshake", since=0,
                                                                       status="requested")))
    await client.delete("Subscription", rows[0]["id"])  # replaced or removed on the EHR side
    dog = Watchdog(ingest.registry, ingest.pools, ingest.handler, ingest.directory, heartbeat_s=60)
    later = datetime.now(timezone.utc) + timedelta(minutes=5)
    reports = {r["subscription"]: r["status"] for r in await dog.check_tenant(t, now=later)}
    assert reports[rows[0]["id"]] == "gone" and rows[1]["id"] in reports
    again = await dog.check_tenant(t, now=later + timedelta(minutes=5))
    assert [r["subscription"] for r in again] == [rows[1]["id"]]  # the gone one is not asked again
    logged = capfd.readouterr()
    assert (logged.out + logged.err).count("watchdog.subscription_gone") == 1
    assert "watchdog.tenant_failed" not in logged.out + logged.err

