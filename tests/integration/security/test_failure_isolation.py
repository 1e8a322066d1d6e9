"""Failure isolation (the poisoned-session lesson): a failing unit of work for one tenant never
affects another tenant or the same tenant's next request, under concurrency."""
from __future__ import annotations

import asyncio

import asyncpg
import pytest

from services.core.tenantdb import TenantPools, TransactionAborted
from tests.fixtures.security import PROBE_TABLE

T = PROBE_TABLE
OPS_PER_TENANT = 60


async def _ok_write(pools, tenant: str, i: int) -> str:
    async with pools.tx(tenant) as conn:
        await conn.execute(f"INSERT INTO {T} (tenant, patient, value) VALUES ($1, $2, 'ok')", tenant, f"p{i}")
        await conn.execute("SELECT pg_sleep(0.002)")  # hold the connection so checkouts overlap
    return "ok"


async def _failing_write(pools, tenant: str, i: int) -> str:
    """Five ways a unit of work breaks; each must roll back and leave a clean connection."""
    kind = i % 5
    try:
        async with pools.tx(tenant, statement_timeout_ms=50) as conn:
            await conn.execute(f"INSERT INTO {T} (tenant, patient, value) VALUES ($1, $2, 'partial')", tenant, f"f{i}")
            if kind == 0:
                await conn.execute(f"INSERT INTO {T} (tenant, patient, value, no_such_column) VALUES ($1, 'x', 'x', 1)",
                                   tenant)
            elif kind == 1:
                await conn.execute(f"INSERT INTO {T} (tenant, patient, value) VALUES ($1, $2, 'dup')", tenant, f"f{i}")
            elif kind == 2:
                await conn.execute(f"UPDATE {T} SET n = -1 WHERE tenant = $1 AND patient = $2", tenant, f"f{i}")
            elif kind == 3:
                await conn.execute("SELECT pg_sleep(1)")  # cancelled by the 50 ms statement timeout
            else:
                try:  # the caller swallows the error and carries on: the commit must not pretend
                    await conn.execute(f"INSERT INTO {T} (tenant, patient, value) VALUES ($1, $2, 'd')", tenant, f"f{i}")
                except asyncpg.UniqueViolationError:
                    pass
        return "committed"
    except (asyncpg.UndefinedColumnError, asyncpg.UniqueViolationError, asyncpg.CheckViolationError,
            asyncpg.QueryCanceledError, TransactionAborted) as exc:
        return type(exc).__name__


async def test_failures_for_a_never_affect_b_or_as_next_request(pools, two_tenants, admin_pool):
    a, b = two_tenants
    ops = []
    for i in range(OPS_PER_TENANT):
        ops.append(_failing_write(pools, a, i) if i % 2 == 0 else _ok_write(pools, a, i))
        ops.append(_ok_write(pools, b, i))
    results = await asyncio.gather(*ops)
    a_results, b_results = results[0::2], results[1::2]
    assert b_results == ["ok"] * OPS_PER_TENANT
    failures = [r for r in a_results if r != "ok"]
    assert sorted(set(failures)) == sorted({"UndefinedColumnError", "UniqueViolationError", "CheckViolationError",
                                            "QueryCanceledError", "TransactionAborted"})
    assert len(failures) == OPS_PER_TENANT // 2
    async with admin_pool.acquire() as conn:
        rows = await conn.fetch(f"SELECT tenant, patient, value FROM {T} WHERE tenant = ANY($1)", [a, b])
    by_tenant = {t: sorted(r["patient"] for r in rows if r["tenant"] == t) for t in (a, b)}
    assert by_tenant[b] == sorted(f"p{i}" for i in range(OPS_PER_TENANT))
    # every failed unit rolled back entirely: none of A's "partial" rows exist
    assert by_tenant[a] == sorted(f"p{i}" for i in range(1, OPS_PER_TENANT, 2))
    assert await _ok_write(pools, a, 10_000) == "ok"  # A's next request is fine
    pool = await pools.pool(a)
    assert pool.get_size() <= pools.max_size


@pytest.fixture
async def one_connection_pools(stack, secrets):
    pools = TenantPools(stack, secrets, min_size=1, max_size=1)  # every checkout reuses one backend
    yield pools
    await pools.close()


async def _session_state(pools, tenant: str) -> dict:
    pool = await pools.pool(tenant)
    async with pool.acquire() as conn:  # a raw checkout: what the next unit of work starts from
        row = await conn.fetchrow(
            "SELECT pg_backend_pid() AS pid, coalesce(current_setting('app.tenant', true), '') AS app_tenant, "
            "current_setting('statement_timeout') AS timeout, now() = statement_timestamp() AS fresh_tx")
        state = {**dict(row), "in_tx": conn.is_in_transaction()}
    async with pools.tx(tenant) as conn:  # and the next unit of work runs as the tenant's own role
        state["own_role"] = await conn.fetchval("SELECT current_user = session_user")
    return state


async def test_aborted_transaction_never_leaks_to_the_next_checkout(one_connection_pools, provision):
    pools = one_connection_pools
    tenant = await provision()
    clean = await _session_state(pools, tenant)
    assert clean["own_role"] and not clean["in_tx"] and clean["app_tenant"] == ""

    with pytest.raises(TransactionAborted):
        async with pools.tx(tenant) as conn:
            await conn.execute("SET app.tenant = 'tpoisoned'")     # session-level, not LOCAL
            await conn.execute("SET statement_timeout = '4321ms'")  # session-level (1 ms fired before 1/0 on a loaded machine)
            await conn.execute("SET ROLE vigil_app")
            try:
                await conn.execute("SELECT 1/0")
            except asyncpg.DivisionByZeroError:
                pass  # swallowed: the transaction is aborted, the commit must not hide it
    after = await _session_state(pools, tenant)
    assert after["pid"] == clean["pid"]  # the very same backend was reused ...
    assert after == clean                # ... and carries nothing from the failed unit of work

    async with pools.tx(tenant) as conn:  # committed session-level changes are undone too
        await conn.execute("SET ROLE vigil_app; SET app.tenant = 'tpoisoned'; SET statement_timeout = '4321ms'")
    assert await _session_state(pools, tenant) == clean

    with pytest.raises(asyncpg.DivisionByZeroError):
        async with pools.tx(tenant) as conn:
            await conn.execute("SELECT 1/0")
    async with pools.tx(tenant) as conn:
        assert await conn.fetchval("SELECT current_setting('app.tenant')") == tenant
    assert await _session_state(pools, tenant) == clean


async def test_cancelled_unit_of_work_returns_a_clean_connection(one_connection_pools, provision):
    pools = one_connection_pools
    tenant = await provision()
    clean = await _session_state(pools, tenant)

    async def slow() -> None:
        async with pools.tx(tenant) as conn:
            await conn.execute(f"INSERT INTO {T} (tenant, patient, value) VALUES ($1, 'cancelled', 'x')", tenant)
            await conn.execute("SELECT pg_sleep(10)")

    task = asyncio.create_task(slow())
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with asyncio.timeout(10):
        async with pools.tx(tenant) as conn:
            assert await conn.fetchval(f"SELECT count(*) FROM {T}") == 0  # the insert rolled back
    state = await _session_state(pools, tenant)
    assert {k: v for k, v in state.items() if k != "pid"} == {k: v for k, v in clean.items() if k != "pid"}


async def test_killed_backend_is_replaced_not_reused(one_connection_pools, provision, admin_pool):
    pools = one_connection_pools
    tenant = await provision()
    before = await _session_state(pools, tenant)
    with pytest.raises((asyncpg.AdminShutdownError, asyncpg.ConnectionDoesNotExistError, asyncpg.InterfaceError,
                        asyncpg.InternalClientError)):
        async with pools.tx(tenant) as conn:
            async with admin_pool.acquire() as admin:
                await admin.execute("SELECT pg_terminate_backend($1)", before["pid"])
            await asyncio.sleep(0.2)  # let the server's FATAL notice arrive
            await conn.execute("SELECT 1")
    async with pools.tx(tenant) as conn:
        assert await conn.fetchval("SELECT 1") == 1
    assert (await _session_state(pools, tenant))["pid"] != before["pid"]
