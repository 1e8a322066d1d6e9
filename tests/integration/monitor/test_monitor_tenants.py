"""Tenants come and go while the monitor runs: the worker follows the registry file; a tenant
onboarded (PostgreSQL role, topics, registry entry) while it runs has its events counted and its
metrics on /metrics within a minute, without a restart; a tenant removed is dropped; a tenant
whose database role is missing has its events refused while the others go on."""
from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest

from services.core.db import create_pool
from services.core.tenancy import Registry, Tenant
from services.core.tenantdb import provision_tenant_role, tenant_role
from services.core.topics import ensure_tenant_topics
from tests.integration.monitor.conftest import T0, findings_event

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("monitor-tenants")]
ONBOARDED_WITHIN_S = 60.0
#: The registry is polled every second and faust re-subscribes a second after a change (5 s and 3 s
#: by default): each registry edit below is followed within seconds instead of ~10.
FOLLOW_FAST = dict(VIGIL_MONITOR_REGISTRY_POLL_S=1, VIGIL_MONITOR_RESUBSCRIBE_S=1)


async def test_a_tenant_onboarded_while_the_monitor_runs_is_monitored_within_a_minute(mon, mon_secrets):
    first = mon.tenant
    second = f"t{uuid.uuid4().hex[:12]}"
    await mon.publish("findings", [findings_event(first, T0, [("colitis", 2)])])
    admin = await create_pool(mon.stack, min_size=1, max_size=1)
    try:
        async with mon.worker(registry=True, **FOLLOW_FAST):
            await mon.wait(lambda: _counted(mon, first, 1), timeout=60)
            status, body = await mon.get("/metrics")
            assert f'vigil_monitor_tenant_monitored{{tenant="{first}"}} 1.0' in body
            assert f'tenant="{second}"' not in body
            # onboarding: the tenant's role and topics, then its registry entry (as `vigil tenant add` does)
            async with admin.acquire() as conn:
                await provision_tenant_role(conn, second, mon_secrets)
            entry = Tenant(id=second, partitions=4)
            await ensure_tenant_topics(mon.stack, entry)
            onboarded = time.monotonic()
            Registry(mon.path, [*Registry.load(mon.path), entry]).save()
            await mon.publish_for(second, "findings", [findings_event(second, T0 + timedelta(hours=i), [("rash", 1)])
                                                      for i in range(3)])
            await mon.wait(lambda: _counted(mon, second, 3), timeout=ONBOARDED_WITHIN_S)
            elapsed = time.monotonic() - onboarded
            assert elapsed < ONBOARDED_WITHIN_S
            status, body = await mon.get("/metrics")
            assert f'vigil_monitor_tenant_monitored{{tenant="{second}"}} 1.0' in body
            assert f'vigil_monitor_findings_total{{category="rash",tenant="{second}"' in body
            assert await _window(mon, second, "notes") == 3
            # the first tenant is removed from the registry: dropped without a restart
            Registry(mon.path, [entry]).save()
            await mon.wait(lambda: _unmonitored(mon, first), timeout=30)
            await mon.publish("findings", [findings_event(first, T0 + timedelta(days=1), [])])
            await mon.publish_for(second, "findings", [findings_event(second, T0 + timedelta(days=1), [])])
            await mon.wait(lambda: _counted(mon, second, 4), timeout=60)
            assert await mon.metric("vigil_monitor_events_total", first) == 1   # nothing new counted for it
            # a tenant in the registry before its PostgreSQL role exists: its events are refused
            # (counted, logged), and the worker goes on with the others
            third = f"t{uuid.uuid4().hex[:12]}"
            await ensure_tenant_topics(mon.stack, Tenant(id=third, partitions=2))
            Registry(mon.path, [entry, Tenant(id=third, partitions=2)]).save()
            await mon.wait(lambda: _monitored(mon, third), timeout=30)
            await mon.publish_for(third, "findings", [findings_event(third, T0, [])])
            await mon.wait(lambda: _refused(mon, third), timeout=60)
            await mon.publish_for(second, "findings", [findings_event(second, T0 + timedelta(days=2), [])])
            await mon.wait(lambda: _counted(mon, second, 5), timeout=60)
            assert (await mon.get("/healthz"))[0] == 200
            assert '"event": "monitor.event_failed"' in mon.log_text() or "monitor.event_failed" in mon.log_text()
            print(f"tenant onboarded -> counted on /metrics in {elapsed:.1f} s")
    finally:
        async with admin.acquire() as conn:
            await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
                               tenant_role(second))
        await admin.close()


async def _counted(mon, tenant: str, n: int) -> bool:
    return await mon.metric("vigil_monitor_events_total", tenant) >= n


async def _monitored(mon, tenant: str) -> bool:
    status, body = await mon.get("/metrics")
    return f'vigil_monitor_tenant_monitored{{tenant="{tenant}"}} 1.0' in body


async def _refused(mon, tenant: str) -> bool:
    status, body = await mon.get("/metrics")
    return any(line.startswith("vigil_monitor_rejected_total{") and f'tenant="{tenant}"' in line
               and 'reason="store_' in line for line in body.splitlines())


async def _unmonitored(mon, tenant: str) -> bool:
    status, body = await mon.get("/metrics")
    return f'vigil_monitor_tenant_monitored{{tenant="{tenant}"}} 0.0' in body


async def _window(mon, tenant: str, metric: str) -> float:
    async with mon.pools.tx(tenant, readonly=True) as conn:
        return float(await conn.fetchval("SELECT coalesce(sum(value), 0) FROM monitor_windows WHERE tenant = $1 AND "
                                         "metric = $2", tenant, metric))
