"""Topic-based Subscriptions (R4 Backport IG) against the EHR sandbox, with a real HTTP subscriber."""
from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.fixtures.subscriptions import subscription_resource

pytestmark = pytest.mark.asyncio


def note(patient: str, text: str = "Follow-up visit.") -> dict:
    import base64

    return {"resourceType": "DocumentReference", "status": "current", "subject": {"reference": f"Patient/{patient}"},
            "content": [{"attachment": {"contentType": "text/plain", "data": base64.b64encode(text.encode()).decode()}}]}


async def patient(client) -> str:
    created = await client.create({"resourceType": "Patient", "name": [{"family": "Test"}]})
    return created.resource["id"]


async def subscribe(ehr_tenant, subscriber, topic: str, **kw) -> dict:
    created = await ehr_tenant.client.create(subscription_resource(topic, subscriber.url, **kw))
    return created.resource


async def wait_active(ehr_tenant, subscriber, sid: str) -> None:
    await subscriber.wait_for(lambda: subscriber.of_type("handshake"), what="handshake")
    for _ in range(100):
        if (await ehr_tenant.client.read("Subscription", sid))["status"] == "active":
            return
        await asyncio.sleep(0.05)
    raise AssertionError("Subscription did not become active")


async def test_handshake_activates_then_heartbeats_and_numbered_events(ehr_tenant, subscriber):
    sub = await subscribe(ehr_tenant, subscriber, "note-created", heartbeat_s=1)
    assert sub["status"] == "requested"
    await wait_active(ehr_tenant, subscriber, sub["id"])
    handshake = subscriber.of_type("handshake")[0]
    assert handshake.bundle["type"] == "history"
    assert handshake.bundle["entry"][0]["resource"]["resourceType"] == "Parameters"
    assert handshake.status["status"] == "requested"
    assert handshake.status["events-since-subscription-start"] == "0"
    assert handshake.status["subscription"]["reference"].endswith(f"/fhir/{ehr_tenant.tenant}/Subscription/{sub['id']}")
    assert handshake.headers["authorization"] == "Bearer test-channel-token"
    assert handshake.headers["content-type"] == "application/fhir+json"

    pid = await patient(ehr_tenant.client)
    ids = [(await ehr_tenant.client.create(note(pid, f"note {i}"))).resource["id"] for i in range(3)]
    amended = await ehr_tenant.client.read("DocumentReference", ids[0])
    amended["docStatus"] = "amended"
    await ehr_tenant.client.update(amended)
    await subscriber.wait_for(lambda: len(subscriber.events()) >= 4, what="4 events")
    events = subscriber.events()
    assert [n for n, _ in events] == [1, 2, 3, 4]
    assert [f.split("/fhir/")[1] for _, f in events] == [
        f"{ehr_tenant.tenant}/DocumentReference/{ids[0]}/_history/1",
        f"{ehr_tenant.tenant}/DocumentReference/{ids[1]}/_history/1",
        f"{ehr_tenant.tenant}/DocumentReference/{ids[2]}/_history/1",
        f"{ehr_tenant.tenant}/DocumentReference/{ids[0]}/_history/2"]
    last = subscriber.of_type("event-notification")[-1]
    assert last.status["events-since-subscription-start"] == "4"
    assert last.status["topic"].endswith("/SubscriptionTopic/note-created")
    # heartbeats keep coming while nothing happens, and carry the event count
    count = len(subscriber.of_type("heartbeat"))
    await subscriber.wait_for(lambda: len(subscriber.of_type("heartbeat")) > count, timeout=5, what="heartbeat")
    assert subscriber.of_type("heartbeat")[-1].status["events-since-subscription-start"] == "4"
    assert subscriber.of_type("heartbeat")[-1].status["status"] == "active"


async def test_filter_criteria_and_topic_actions(ehr_tenant, subscriber):
    owner_a = (await ehr_tenant.client.create({"resourceType": "Practitioner"})).resource["id"]
    owner_b = (await ehr_tenant.client.create({"resourceType": "Practitioner"})).resource["id"]
    sub = await subscribe(ehr_tenant, subscriber, "task-updated", filters=[f"Task?owner=Practitioner/{owner_a}"])
    await wait_active(ehr_tenant, subscriber, sub["id"])
    pid = await patient(ehr_tenant.client)
    tasks = {}
    for owner in (owner_a, owner_b):
        task = {"resourceType": "Task", "status": "requested", "intent": "proposal",
                "for": {"reference": f"Patient/{pid}"}, "owner": {"reference": f"Practitioner/{owner}"}}
        tasks[owner] = (await ehr_tenant.client.create(task)).resource  # create: not "task-updated"
    for owner in (owner_b, owner_a):
        task = dict(tasks[owner], status="completed")
        await ehr_tenant.client.update(task)
    # a note is a different topic
    await ehr_tenant.client.create(note(pid))
    await subscriber.wait_for(lambda: subscriber.events(), what="the filtered event")
    await asyncio.sleep(0.7)  # anything wrongly queued would arrive by now
    events = subscriber.events()
    assert [(n, f.split("/fhir/")[1]) for n, f in events] == [
        (1, f"{ehr_tenant.tenant}/Task/{tasks[owner_a]['id']}/_history/2")]


async def test_content_levels(ehr_tenant, subscriber):
    subs = {}
    for content in ("empty", "id-only", "full-resource"):
        subs[content] = await subscribe(ehr_tenant, subscriber, "communication-created", content=content)
    # delivery is at least once: a handshake whose answer came late under load is sent again
    await subscriber.wait_for(lambda: len(subscriber.of_type("handshake")) >= 3, what="3 handshakes")
    pid = await patient(ehr_tenant.client)
    message = (await ehr_tenant.client.create({"resourceType": "Communication", "status": "completed",
                                               "subject": {"reference": f"Patient/{pid}"},
                                               "payload": [{"contentString": "Can I move my visit?"}]})).resource
    await subscriber.wait_for(lambda: len(subscriber.of_type("event-notification")) == 3, what="3 notifications")
    by_sub = {r.status["subscription"]["reference"].rsplit("/", 1)[1]: r for r in subscriber.of_type("event-notification")}
    empty, id_only, full = (by_sub[subs[c]["id"]] for c in ("empty", "id-only", "full-resource"))
    assert empty.status["events"] == [(1, None)] and "topic" not in empty.status
    assert len(empty.bundle["entry"]) == 1
    assert id_only.status["events"][0][1].endswith(f"/Communication/{message['id']}/_history/1")
    assert len(id_only.bundle["entry"]) == 1
    assert len(full.bundle["entry"]) == 2
    entry = full.bundle["entry"][1]
    assert entry["resource"] == message
    assert entry["request"] == {"method": "POST", "url": "Communication"}
    assert entry["response"]["status"] == "201" and entry["response"]["etag"] == 'W/"1"'
    assert entry["fullUrl"].endswith(f"/fhir/{ehr_tenant.tenant}/Communication/{message['id']}")


async def test_receiver_outage_is_caught_up_in_order(ehr_tenant, subscriber):
    sub = await subscribe(ehr_tenant, subscriber, "appointment-changed", max_count=2)
    await wait_active(ehr_tenant, subscriber, sub["id"])
    subscriber.fail_status = 503
    pid = await patient(ehr_tenant.client)
    n = 7
    for i in range(n):
        await ehr_tenant.client.create({"resourceType": "Appointment", "status": "booked",
                                        "participant": [{"actor": {"reference": f"Patient/{pid}"}, "status": "accepted"}]})
    await subscriber.wait_for(lambda: subscriber.refused >= 4, what="failed attempts")
    # after repeated failures the server reports the subscription in error, events still queued
    for _ in range(100):
        status = await ehr_tenant.client._json("GET", f"Subscription/{sub['id']}/$status")
        params = {p["name"]: p for p in status["entry"][0]["resource"]["parameter"]}
        if params["status"]["valueCode"] == "error":
            break
        await asyncio.sleep(0.05)
    assert status["type"] == "searchset"
    assert params["status"]["valueCode"] == "error"
    assert params["events-since-subscription-start"]["valueString"] == str(n)
    assert (await ehr_tenant.client.read("Subscription", sub["id"]))["status"] == "error"
    assert subscriber.events() == []
    subscriber.fail_status = None
    await subscriber.wait_for(lambda: len(subscriber.events()) >= n, timeout=20, what="catch-up")
    assert [num for num, _ in subscriber.events()] == list(range(1, n + 1))
    assert all(len(r.status["events"]) <= 2 for r in subscriber.of_type("event-notification"))  # maxCount
    for _ in range(100):
        if (await ehr_tenant.client.read("Subscription", sub["id"]))["status"] == "active":
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("Subscription did not return to active after the catch-up")


async def test_gap_is_recoverable_with_events_operation(ehr_tenant, subscriber):
    sub = await subscribe(ehr_tenant, subscriber, "note-created")
    await wait_active(ehr_tenant, subscriber, sub["id"])
    pid = await patient(ehr_tenant.client)
    ids = []
    for i in range(4):
        ids.append((await ehr_tenant.client.create(note(pid, f"n{i}"))).resource["id"])
    await subscriber.wait_for(lambda: len(subscriber.events()) >= 4, what="4 events")
    # the receiver lost events 2..3: ask the EHR for them
    bundle = await ehr_tenant.client._json("GET", f"Subscription/{sub['id']}/$events",
                                           params={"eventsSinceNumber": "2", "eventsUntilNumber": "3"})
    assert bundle["type"] == "history"
    params = bundle["entry"][0]["resource"]["parameter"]
    assert {p["name"]: p.get("valueCode") for p in params}["type"] == "query-event"
    events = [{q["name"]: q for q in p["part"]} for p in params if p["name"] == "notification-event"]
    assert [e["event-number"]["valueString"] for e in events] == ["2", "3"]
    assert [e["focus"]["valueReference"]["reference"].split("/DocumentReference/")[1] for e in events] == [
        f"{ids[1]}/_history/1", f"{ids[2]}/_history/1"]
    full = await ehr_tenant.client._json("POST", f"Subscription/{sub['id']}/$events", json_body={
        "resourceType": "Parameters", "parameter": [{"name": "eventsSinceNumber", "valueString": "4"},
                                                    {"name": "content", "valueCode": "full-resource"}]})
    assert [e["resource"]["id"] for e in full["entry"][1:]] == [ids[3]]
    with pytest.raises(Exception) as err:
        await ehr_tenant.client._json("GET", f"Subscription/{sub['id']}/$events",
                                      params={"eventsSinceNumber": "3", "eventsUntilNumber": "2"})
    assert "400" in str(err.value) or getattr(err.value, "status", None) == 400


async def _raw(ehr_tenant, method: str, path: str, body=None) -> httpx.Response:
    token = await ehr_tenant.client.access_token()
    async with httpx.AsyncClient() as http:
        return await http.request(method, f"{ehr_tenant.base_url}/{path}", json=body,
                                  headers={"Authorization": f"Bearer {token}",
                                           "Content-Type": "application/fhir+json"})


async def test_invalid_subscriptions_are_rejected_with_outcome(ehr_tenant, subscriber):
    bad_topic = subscription_resource("http://example.org/unknown-topic", subscriber.url)
    response = await _raw(ehr_tenant, "POST", "Subscription", bad_topic)
    assert response.status_code == 422
    assert response.json()["issue"][0]["expression"] == ["Subscription.criteria"]
    no_content = subscription_resource("note-created", subscriber.url)
    del no_content["channel"]["_payload"]
    bad_filter = subscription_resource("note-created", subscriber.url, filters=["Task?owner=Practitioner/1"])
    bad_param = subscription_resource("note-created", subscriber.url, filters=["DocumentReference?nonsense=1"])
    for body in (no_content, bad_filter, bad_param):
        response = await _raw(ehr_tenant, "POST", "Subscription", body)
        assert response.status_code == 422, response.text
        assert response.json()["resourceType"] == "OperationOutcome"
    assert (await ehr_tenant.client.search("Subscription")) == []


async def test_failed_handshake_puts_subscription_in_error(ehr_tenant, subscriber):
    subscriber.fail_status = 500
    sub = await subscribe(ehr_tenant, subscriber, "note-created")
    for _ in range(100):
        if (await ehr_tenant.client.read("Subscription", sub["id"]))["status"] == "error":
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("Subscription did not go to error")
    assert subscriber.refused == 3
    # re-requesting it handshakes again
    subscriber.fail_status = None
    current = await ehr_tenant.client.read("Subscription", sub["id"])
    await ehr_tenant.client.update({**current, "status": "requested"})
    await wait_active(ehr_tenant, subscriber, sub["id"])


async def test_other_tenants_subscription_is_not_found(ehr_tenant, ehr_server, subscriber, tenant_id):
    sub = await subscribe(ehr_tenant, subscriber, "note-created")
    other = "o" + tenant_id[1:]
    async with ehr_server.admin() as admin:
        await admin.create_tenant(other)
        creds = await admin.new_client(other, "other", ["system/*.cruds"])
    from services.core.fhir import FhirClient

    async with FhirClient(ehr_server.base(other), credentials=creds) as client:
        for op in ("$status", "$events"):
            with pytest.raises(Exception) as err:
                await client._json("GET", f"Subscription/{sub['id']}/{op}")
            assert "404" in str(err.value) or getattr(err.value, "status", None) == 404
