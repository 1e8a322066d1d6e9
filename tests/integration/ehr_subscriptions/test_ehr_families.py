"""The sandbox playing EHR families (epic-like, fhir-server) and classic R4 criteria rest-hook
Subscriptions, against the real sandbox over HTTP with a real HTTP subscriber."""
from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.fixtures.subscriptions import r4_subscription

pytestmark = pytest.mark.asyncio
REPO = Path(__file__).resolve().parents[3]


def note(patient: str, text: str = "Follow-up visit.", status: str = "current") -> dict:
    return {"resourceType": "DocumentReference", "status": status, "subject": {"reference": f"Patient/{patient}"},
            "content": [{"attachment": {"contentType": "text/plain", "data": base64.b64encode(text.encode()).decode()}}]}


async def _raw(ehr_tenant, method: str, path: str, body=None, params=None) -> httpx.Response:
    token = await ehr_tenant.client.access_token()
    async with httpx.AsyncClient() as http:
        return await http.request(method, f"{ehr_tenant.base_url}/{path}", json=body, params=params,
                                  headers={"Authorization": f"Bearer {token}",
                                           "Content-Type": "application/fhir+json"})


def _outcome(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["code"] == code
    return body["issue"][0]["diagnostics"]


async def wait_until(predicate, timeout: float = 15.0, what: str = "condition"):
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def test_epic_like_refuses_what_epic_refuses_and_serves_patient_searches(ehr_tenant, subscriber):
    client, tenant = ehr_tenant.client, ehr_tenant.tenant
    pid = (await client.create({"resourceType": "Patient", "name": [{"family": "Family"}]})).resource["id"]
    doc = (await client.create(note(pid))).resource
    assert (await ehr_tenant.admin.set_family(tenant, "epic-like")) == {"tenant": tenant, "family": "epic-like"}
    assert (await ehr_tenant.admin.get_family(tenant))["family"] == "epic-like"

    # No Subscriptions, of either style.
    text = _outcome(await _raw(ehr_tenant, "POST", "Subscription",
                               r4_subscription("DocumentReference?status=current", subscriber.url)), 403, "not-supported")
    assert "Subscriptions" in text
    _outcome(await _raw(ehr_tenant, "GET", "Subscription"), 403, "not-supported")
    # DocumentReference search needs a patient; with one it works.
    _outcome(await _raw(ehr_tenant, "GET", "DocumentReference", params={"_lastUpdated": "ge2020-01-01"}), 400,
             "required")
    _outcome(await _raw(ehr_tenant, "GET", "DocumentReference/_history"), 400, "required")
    found = await _raw(ehr_tenant, "GET", "DocumentReference", params={"patient": pid})
    assert found.status_code == 200 and [e["resource"]["id"] for e in found.json()["entry"]] == [doc["id"]]
    by_subject = await _raw(ehr_tenant, "GET", "DocumentReference", params={"subject": f"Patient/{pid}"})
    assert by_subject.status_code == 200 and by_subject.json()["total"] == 1
    # Task, Observation, Provenance writes: 403 with an OperationOutcome, by REST and in a transaction.
    task = {"resourceType": "Task", "status": "requested", "intent": "order", "for": {"reference": f"Patient/{pid}"}}
    observation = {"resourceType": "Observation", "status": "final", "code": {"text": "irAE grade"},
                   "subject": {"reference": f"Patient/{pid}"}}
    provenance = {"resourceType": "Provenance", "target": [{"reference": f"DocumentReference/{doc['id']}"}],
                  "recorded": "2026-01-01T00:00:00Z", "agent": [{"who": {"display": "Vigil"}}]}
    for resource in (task, observation, provenance):
        text = _outcome(await _raw(ehr_tenant, "POST", resource["resourceType"], resource), 403, "forbidden")
        assert resource["resourceType"] in text
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:6a1c1c1c-0000-4000-8000-000000000001", "resource": task,
         "request": {"method": "POST", "url": "Task"}}]}
    assert "Bundle.entry[0]" in _outcome(await _raw(ehr_tenant, "POST", "", bundle), 403, "forbidden")
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": observation, "request": {"method": "POST", "url": "Observation"}},
        {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}}]}
    answer = await _raw(ehr_tenant, "POST", "", batch)
    assert answer.status_code == 200
    statuses = [e["response"]["status"] for e in answer.json()["entry"]]
    assert statuses[0] == "403" and statuses[1].startswith("201")
    assert not (await _raw(ehr_tenant, "GET", "Task", params={"patient": pid})).json().get("entry")
    # Other writes (a note, a patient) still work; the CapabilityStatement says what is offered.
    assert (await client.create(note(pid, "second"))).resource["id"]
    capability = (await _raw(ehr_tenant, "GET", "metadata")).json()
    by_type = {r["type"]: r for r in capability["rest"][0]["resource"]}
    assert "Subscription" not in by_type
    assert {i["code"] for i in by_type["Task"]["interaction"]} == {"read", "vread", "history-instance", "search-type"}
    assert "create" in {i["code"] for i in by_type["DocumentReference"]["interaction"]}
    assert "patient" in by_type["DocumentReference"]["documentation"]

    # Back to a FHIR server: everything is accepted again.
    await ehr_tenant.admin.set_family(tenant, "fhir-server")
    assert (await client.create(task)).resource["id"]
    assert (await _raw(ehr_tenant, "GET", "DocumentReference")).status_code == 200
    assert "Subscription" in {r["type"] for r in (await _raw(ehr_tenant, "GET", "metadata")).json()["rest"][0]["resource"]}


async def test_family_admin_api_refuses_bad_input(ehr_tenant):
    async with httpx.AsyncClient() as http:
        url = f"{ehr_tenant.server.url}/admin/tenants/{ehr_tenant.tenant}/family"
        auth = {"Authorization": f"Bearer {ehr_tenant.server.admin_secret}"}
        for body in ({"family": "cerner"}, {"family": "epic-like", "x": 1}, [1]):
            _outcome(await http.put(url, json=body, headers=auth), 400, "invalid")
        _outcome(await http.put(url, json={"family": "epic-like"}), 401, "login")
        missing = await http.get(f"{ehr_tenant.server.url}/admin/tenants/no-such-tenant-x/family", headers=auth)
        assert missing.status_code == 404
    assert (await ehr_tenant.admin.get_family(ehr_tenant.tenant))["family"] == "fhir-server"


def _vigil(server, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "VIGIL_EHR_URL": server.url, "VIGIL_EHR_ADMIN_SECRET": server.admin_secret}
    return subprocess.run([sys.executable, "-m", "services.cli", "ehr", "family", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


async def test_family_cli(ehr_tenant):
    server, tenant = ehr_tenant.server, ehr_tenant.tenant
    done = await asyncio.to_thread(_vigil, server, "set", "--tenant", tenant, "epic-like")
    assert done.returncode == 0, done.stderr
    assert f"tenant {tenant} plays epic-like" in done.stdout
    shown = await asyncio.to_thread(_vigil, server, "show", "--tenant", tenant)
    assert shown.returncode == 0 and shown.stdout.strip() == "epic-like"
    bad = await asyncio.to_thread(_vigil, server, "set", "--tenant", tenant, "cerner")
    assert bad.returncode == 2 and "fhir-server, epic-like" in bad.stderr
    assert (await ehr_tenant.admin.get_family(tenant))["family"] == "epic-like"
    back = await asyncio.to_thread(_vigil, server, "set", "--tenant", tenant, "fhir-server")
    assert back.returncode == 0 and (await ehr_tenant.admin.get_family(tenant))["family"] == "fhir-server"


def _bodies(subscriber) -> list[tuple[bytes, dict]]:
    return list(subscriber.raw)


async def test_r4_criteria_subscription_posts_matching_versions(ehr_tenant, subscriber):
    client = ehr_tenant.client
    created = (await client.create(r4_subscription("DocumentReference?status=current", subscriber.url))).resource
    assert created["status"] == "active"  # no handshake in R4
    pid = (await client.create({"resourceType": "Patient"})).resource["id"]
    skipped = (await client.create(note(pid, "superseded", status="superseded"))).resource
    doc = (await client.create(note(pid, "current"))).resource
    amended = (await client.update({**doc, "docStatus": "amended"})).resource
    await client.delete("DocumentReference", doc["id"])  # R4: no notification for a deletion
    later = (await client.create(note(pid, "later"))).resource

    await subscriber.wait_for(lambda: len(subscriber.raw) >= 3, what="3 notifications")
    posted = _bodies(subscriber)
    resources = [json.loads(body) for body, _ in posted]
    assert [(r["id"], r["meta"]["versionId"]) for r in resources] == [
        (doc["id"], "1"), (amended["id"], "2"), (later["id"], "1")]
    assert skipped["id"] not in {r["id"] for r in resources}
    assert all(h["authorization"] == "Bearer test-channel-token" and h["content-type"] == "application/fhir+json"
               for _, h in posted)
    assert subscriber.received == []  # no notification Bundles in R4


async def test_r4_empty_payload_and_error_status(ehr_tenant, subscriber):
    client = ehr_tenant.client
    sub = (await client.create(r4_subscription("DocumentReference", subscriber.url, payload=None))).resource
    pid = (await client.create({"resourceType": "Patient"})).resource["id"]
    await client.create(note(pid))
    await subscriber.wait_for(lambda: subscriber.raw, what="an empty notification")
    body, headers = subscriber.raw[0]
    assert body == b"" and "content-type" not in headers and headers["authorization"].startswith("Bearer ")

    # The endpoint fails: retried, then the Subscription is in error; it recovers when the endpoint does.
    subscriber.fail_status = 503
    await client.create(note(pid, "while failing"))

    async def in_error():
        return (await client.read("Subscription", sub["id"]))["status"] == "error"
    await wait_until(in_error, 20, "status error")
    assert subscriber.refused >= 4
    subscriber.fail_status = None
    await subscriber.wait_for(lambda: len(subscriber.raw) >= 2, timeout=20, what="the retried notification")

    async def active():
        return (await client.read("Subscription", sub["id"]))["status"] == "active"
    await wait_until(active, 10, "status active again")


async def test_r4_criteria_are_validated(ehr_tenant, subscriber):
    for criteria, payload in (("Nonsense?x=1", "application/fhir+json"),
                              ("DocumentReference?bogus=1", "application/fhir+json"),
                              ("DocumentReference", "text/plain")):
        response = await _raw(ehr_tenant, "POST", "Subscription", r4_subscription(criteria, subscriber.url,
                                                                                  payload=payload))
        assert response.status_code == 422, (criteria, response.text)
        assert response.json()["resourceType"] == "OperationOutcome"
