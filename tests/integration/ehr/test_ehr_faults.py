"""Per-tenant fault injection through the admin API."""
from __future__ import annotations

import time

import httpx
import pytest

from services.core.errors import RetryableError

pytestmark = pytest.mark.integration
TASK = {"resourceType": "Task", "status": "requested", "intent": "proposal"}


async def test_error_rate_statuses_and_retry_after(ehr_tenant):
    c, admin, tenant = ehr_tenant.client, ehr_tenant.admin, ehr_tenant.tenant
    await c.access_token()  # take the token before the faults start
    for status in (429, 503, 500):
        await admin.set_faults(tenant, error_rate=1.0, error_status=status, retry_after_s=7)
        with pytest.raises(RetryableError) as failed:
            await c.search("Task")
        assert failed.value.status == status and failed.value.outcome["resourceType"] == "OperationOutcome"
        assert failed.value.retry_after == (7.0 if status in (429, 503) else None)
    await admin.set_faults(tenant, error_rate=0.5, error_status=503)
    outcomes = []
    for _ in range(40):
        try:
            await c.search("Task")
            outcomes.append(True)
        except RetryableError:
            outcomes.append(False)
    assert 5 <= outcomes.count(False) <= 35  # 40 draws at p=0.5: outside [5, 35] has odds below 1e-6
    await admin.clear_faults(tenant)
    assert await c.search("Task") == []


async def test_latency_and_outage(ehr_tenant):
    c, admin, tenant = ehr_tenant.client, ehr_tenant.admin, ehr_tenant.tenant
    await c.access_token()
    await admin.set_faults(tenant, latency_ms=300)
    started = time.monotonic()
    await c.search("Task")
    assert time.monotonic() - started >= 0.3
    await admin.set_faults(tenant, outage_s=30)
    state = await admin.get_faults(tenant)
    assert 25 < state["outage_remaining_s"] <= 30
    async with httpx.AsyncClient() as http:  # even metadata is down during an outage
        down = await http.get(f"{ehr_tenant.base_url}/metadata")
    assert down.status_code == 503 and 25 <= int(down.headers["retry-after"]) <= 30
    with pytest.raises(RetryableError) as outage:
        await c.read("Task", "x")
    assert outage.value.retry_after and outage.value.retry_after > 20
    await admin.clear_faults(tenant)
    assert (await c.search_page("Task"))["total"] == 0


async def test_dropped_writes_answer_success_and_lose_the_write(ehr_tenant):
    c, admin, tenant = ehr_tenant.client, ehr_tenant.admin, ehr_tenant.tenant
    kept = await c.create(TASK)
    await admin.set_faults(tenant, drop_writes=True)
    lost = await c.create(TASK)
    assert lost.created and lost.id and lost.version == 1
    updated = await c.update({**kept.resource, "status": "accepted"})
    assert updated.version == 2
    response = await c.transaction({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": TASK, "request": {"method": "POST", "url": "Task"}}]})
    assert response["entry"][0]["response"]["status"] == "201 Created"
    await admin.clear_faults(tenant)
    from services.core.errors import NotFoundError

    with pytest.raises(NotFoundError):  # read-back verification catches the lost write
        await c.read("Task", lost.id)
    assert (await c.read("Task", kept.id))["meta"]["versionId"] == "1"
    assert len(await c.search("Task")) == 1


async def test_faults_are_per_tenant_and_validated(ehr_server, ehr_tenant):
    async with ehr_server.admin() as admin:
        other = ehr_tenant.tenant[:-1] + ("x" if ehr_tenant.tenant[-1] != "x" else "y")
        await admin.create_tenant(other)
        await admin.set_faults(other, error_rate=1.0, error_status=500)
        assert await ehr_tenant.client.search("Task") == []  # our tenant is unaffected
        await admin.clear_faults(other)
    async with httpx.AsyncClient() as http:
        url = f"{ehr_server.url}/admin/tenants/{ehr_tenant.tenant}/faults"
        auth = {"Authorization": f"Bearer {ehr_server.admin_secret}"}
        for body in ({"error_rate": 2}, {"error_status": 418}, {"drop_writes": "yes"}, {"bogus": 1}, [1]):
            response = await http.put(url, json=body, headers=auth)
            assert response.status_code == 400 and response.json()["resourceType"] == "OperationOutcome"
