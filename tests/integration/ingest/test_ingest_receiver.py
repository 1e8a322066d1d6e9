"""The notification receiver over HTTP (ASGI) with Bundles built per the IG (subscription
ids unknown to the EHR), the real broker, PostgreSQL and the EHR sandbox for reads. The gap
test exercises the fallback: ``$events`` of an unknown subscription fails, so the gap is
recovered by a search by ``_lastUpdated``. The EHR's own deliveries are in test_ingest_e2e.
"""
from __future__ import annotations

import base64
import json
import uuid

import httpx
import pytest

from services.ingest.receiver import auth
from services.ingest.receiver.app import ReceiverContext, create_app
from tests.integration.ingest.notify import TOPIC_TASKS, notification


def note(patient_id: str, text: str = "Grade 2 colitis after nivolumab.") -> dict:
    return {"resourceType": "DocumentReference", "status": "current",
            "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3"}]},
            "subject": {"reference": f"Patient/{patient_id}"},
            "content": [{"attachment": {"contentType": "text/plain",
                                        "data": base64.b64encode(text.encode()).decode()}}]}


async def make_patient(client) -> str:
    result = await client.create({"resourceType": "Patient", "name": [{"family": "Test"}]})
    return result.resource["id"]


@pytest.fixture
async def http(ingest):
    app = create_app(ReceiverContext(ingest.registry, auth_secrets(), ingest.handler))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest") as client:
        yield client


def auth_secrets():
    from services.core.secrets import SecretSettings
    return SecretSettings.from_env({"VIGIL_ENV": "test"})


def headers(tenant: str, body: bytes | None = None, *, signed: bool = True) -> dict:
    out = {"Content-Type": "application/fhir+json",
           "Authorization": f"Bearer {auth.channel_token(auth_secrets(), tenant)}"}
    if signed and body is not None:
        out[auth.SIGNATURE_HEADER] = auth.sign(auth_secrets(), tenant, body)
    return out


async def post(http, tenant: str, bundle: dict, **kw):
    body = json.dumps(bundle).encode()
    return await http.post(f"/notify/{tenant}", content=body, headers=headers(tenant, body, **kw))


async def test_handshake_and_heartbeat_publish_nothing(ingest, http):
    t = ingest.tenant.id
    r1 = await post(http, t, notification("sub-1", "handshake", since=0, status="requested"))
    r2 = await post(http, t, notification("sub-1", "heartbeat", since=0))
    assert r1.status_code == 200 and r2.status_code == 200
    assert r1.json()["resourceType"] == "OperationOutcome"
    assert await ingest.events(want=1, timeout=2, settle=0) == []


@pytest.mark.parametrize("content", ["full-resource", "id-only"])
async def test_event_is_published_once_and_replays_are_dropped(ingest, http, content):
    t, client = ingest.tenant.id, ingest.ehr.client
    patient = await make_patient(client)
    doc = (await client.create(note(patient))).resource
    await post(http, t, notification("sub-1", "handshake", since=0, status="requested"))
    bundle = notification("sub-1", "event-notification", since=1, events=[(1, doc)], content=content)
    first = await post(http, t, bundle)
    replay = await post(http, t, bundle)
    assert first.status_code == 200 and "published=1" in first.json()["issue"][0]["diagnostics"]
    assert replay.status_code == 200 and "duplicates=1" in replay.json()["issue"][0]["diagnostics"]
    events = await ingest.events(want=1, timeout=5)
    assert len(events) == 1
    data = events[0].data
    assert data == {"resourceType": "DocumentReference", "id": doc["id"], "versionId": "1", "patient": patient,
                    "action": "create", "origin": "subscription", "lastUpdated": doc["meta"]["lastUpdated"],
                    "subscription": "sub-1", "eventNumber": 1}
    assert events[0].key == patient


async def test_same_version_under_another_event_number_is_dropped(ingest, http):
    t, client = ingest.tenant.id, ingest.ehr.client
    doc = (await client.create(note(await make_patient(client)))).resource
    await post(http, t, notification("sub-1", "event-notification", since=1, events=[(1, doc)]))
    again = await post(http, t, notification("sub-1", "event-notification", since=2, events=[(2, doc)]))
    assert again.status_code == 200 and "duplicates=1" in again.json()["issue"][0]["diagnostics"]
    assert len(await ingest.events(want=2, timeout=4)) == 1


async def test_update_is_published_as_new_version(ingest, http):
    t, client = ingest.tenant.id, ingest.ehr.client
    doc = (await client.create(note(await make_patient(client)))).resource
    updated = (await client.update({**doc, "docStatus": "final"})).resource
    r = await post(http, t, notification("sub-1", "event-notification", since=2, events=[(1, doc), (2, updated)],
                                         content="id-only"))
    assert r.status_code == 200
    events = await ingest.events(want=2, timeout=5)
    assert sorted((e.data["versionId"], e.data["action"]) for e in events) == [("1", "create"), ("2", "update")]


async def test_gap_is_recovered_by_search_when_events_is_unavailable(ingest, http):
    t, client = ingest.tenant.id, ingest.ehr.client
    patient = await make_patient(client)
    await post(http, t, notification("sub-g", "handshake", since=0, status="requested"))
    docs = [(await client.create(note(patient, f"note {i}"))).resource for i in range(4)]
    assert (await post(http, t, notification("sub-g", "event-notification", since=1, events=[(1, docs[0])]))
            ).status_code == 200
    # events 2 and 3 never arrive; event 4 does: the receiver notices the gap and recovers it.
    r = await post(http, t, notification("sub-g", "event-notification", since=4, events=[(4, docs[3])]))
    assert r.status_code == 200, r.text
    events = await ingest.events(want=4, timeout=6)
    assert sorted(e.data["id"] for e in events) == sorted(d["id"] for d in docs)
    assert len(events) == 4
    # and a heartbeat that reports more events than we have seen triggers the same recovery (nothing new here)
    hb = await post(http, t, notification("sub-g", "heartbeat", since=4))
    assert hb.status_code == 200
    assert len(await ingest.events(want=5, timeout=2, settle=0)) == 4


async def test_task_update_goes_to_feedback(ingest, http):
    t, client = ingest.tenant.id, ingest.ehr.client
    patient = await make_patient(client)
    task = (await client.create({"resourceType": "Task", "status": "rejected", "intent": "order",
                                 "for": {"reference": f"Patient/{patient}"},
                                 "statusReason": {"coding": [{"code": "not-irae"}]},
                                 "note": [{"text": "free text that may name the patient"}]})).resource
    r = await post(http, t, notification("sub-t", "event-notification", since=1, events=[(1, task)], topic=TOPIC_TASKS))
    assert r.status_code == 200
    [event] = await ingest.events("feedback", want=1, timeout=5)
    assert event.type == "vigil.ehr.task-updated"
    assert event.data == {"task": {"id": task["id"], "versionId": "1"}, "patient": patient, "status": "rejected",
                          "statusReason": "not-irae", "note": None, "lastUpdated": task["meta"]["lastUpdated"]}
    assert await ingest.events(want=1, timeout=1, settle=0) == []  # nothing on ehr-events


async def test_auth_and_bad_requests_are_4xx_and_publish_nothing(ingest, http):
    t, client = ingest.tenant.id, ingest.ehr.client
    doc = (await client.create(note(await make_patient(client)))).resource
    good = json.dumps(notification("sub-1", "event-notification", since=1, events=[(1, doc)])).encode()
    base = {"Content-Type": "application/fhir+json"}
    transaction = json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": []}).encode()
    patient = json.dumps({"resourceType": "Patient"}).encode()
    cases = [
        ({**base}, good, 401),
        ({**base, "Authorization": "Bearer wrong"}, good, 401),
        ({**headers(t), auth.SIGNATURE_HEADER: "sha256=00"}, good, 401),
        (headers(t), good, 401),  # the channel-header token alone: the tenant requires a signature
        ({**headers("other-tenant", good)}, good, 401),
        ({**headers(t, good), "Content-Type": "text/plain"}, good, 415),
        (headers(t, b"{not json"), b"{not json", 400),
        (headers(t, transaction), transaction, 400),
        (headers(t, patient), patient, 400),
    ]
    for hdrs, body, status in cases:
        r = await http.post(f"/notify/{t}", content=body, headers=hdrs)
        assert r.status_code == status, (status, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"
    r = await http.post(f"/notify/unknown-{uuid.uuid4().hex[:6]}", content=good, headers=headers(t, good))
    assert r.status_code == 404
    signed = await post(http, t, json.loads(good), signed=True)
    assert signed.status_code == 200
    assert len(await ingest.events(want=2, timeout=3)) == 1  # only the signed, valid one
