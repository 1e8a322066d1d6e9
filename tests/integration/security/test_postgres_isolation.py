"""PostgreSQL: forced RLS + per-tenant login roles; every cross-tenant attempt is refused by the server."""
from __future__ import annotations

import asyncpg
import pytest

from services.core.tenantdb import APP_ROLE, TenantPools, TenantRoleMissing, tenant_role
from tests.fixtures.security import PROBE_TABLE

T = PROBE_TABLE


async def _seed(pools, tenant: str, patient: str = "p1", value: str = "secret") -> None:
    async with pools.tx(tenant) as conn:
        await conn.execute(f"INSERT INTO {T} (tenant, patient, value) VALUES ($1, $2, $3)", tenant, patient, value)


async def _rows(pools, tenant: str) -> list:
    async with pools.tx(tenant, readonly=True) as conn:
        return await conn.fetch(f"SELECT tenant, patient, value, n FROM {T} ORDER BY patient")


async def test_tenant_sees_and_writes_only_its_rows(pools, two_tenants, admin_pool):
    a, b = two_tenants
    await _seed(pools, a, "p1", "a-value")
    await _seed(pools, b, "p1", "b-value")
    assert [tuple(r) for r in await _rows(pools, a)] == [(a, "p1", "a-value", 0)]
    assert [tuple(r) for r in await _rows(pools, b)] == [(b, "p1", "b-value", 0)]
    async with pools.tx(a) as conn:
        who = await conn.fetchrow("SELECT session_user, current_user, current_setting('app.tenant', true) AS t, "
                                  "(SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user) AS power")
    assert (who["session_user"], who["current_user"], who["t"], who["power"]) == (tenant_role(a), tenant_role(a), a, False)
    async with admin_pool.acquire() as conn:  # the platform connection sees both: the rows really exist
        assert await conn.fetchval(f"SELECT count(*) FROM {T} WHERE tenant = ANY($1)", [a, b]) == 2
        forced = await conn.fetchrow("SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = $1", T)
        app = await conn.fetchrow("SELECT rolsuper, rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname = $1", APP_ROLE)
    assert tuple(forced) == (True, True)
    assert tuple(app) == (False, False, False)


async def test_unknown_tenant_role_is_a_clear_error(stack, secrets):
    pools = TenantPools(stack, secrets)
    try:
        with pytest.raises(TenantRoleMissing, match="vigil tenant add"):
            async with pools.tx("tnobodyhere"):
                pass
    finally:
        await pools.close()


async def test_cross_tenant_reads_are_empty(pools, two_tenants, adversary):
    a, b = two_tenants
    await _seed(pools, a)
    await _seed(pools, b)
    async with pools.tx(a) as conn:
        rows = await conn.fetch(f"SELECT * FROM {T}")
        adversary.check("pg: SELECT * sees another tenant's rows", [r["tenant"] for r in rows] == [a],
                        f"{len(rows)} rows, own row visible")
        rows = await conn.fetch(f"SELECT * FROM {T} WHERE tenant = $1", b)
        adversary.check("pg: SELECT WHERE tenant = <other>", rows == [], f"{len(rows)} rows")
        n = await conn.fetchval(f"SELECT count(*) FROM {T} WHERE tenant <> $1", a)
        adversary.check("pg: count(*) of other tenants' rows", n == 0, f"count {n}")
        n = await conn.fetchval("SELECT count(*) FROM vigil_audit_log WHERE tenant <> $1", a)
        adversary.check("pg: read other tenants' audit records", n == 0, f"count {n}")
        n = await conn.fetchval("SELECT count(*) FROM vigil_tenant_keys WHERE tenant <> $1", a)
        adversary.check("pg: read other tenants' wrapped data keys", n == 0, f"count {n}")


async def test_forged_tenant_column_is_refused(pools, two_tenants, adversary):
    a, b = two_tenants
    await _seed(pools, a, "mine")
    with adversary.attempt("pg: INSERT with forged tenant column", asyncpg.InsufficientPrivilegeError):
        async with pools.tx(a) as conn:
            await conn.execute(f"INSERT INTO {T} (tenant, patient, value) VALUES ($1, 'x', 'forged')", b)
    with adversary.attempt("pg: UPDATE own row to move it to another tenant", asyncpg.InsufficientPrivilegeError):
        async with pools.tx(a) as conn:
            await conn.execute(f"UPDATE {T} SET tenant = $1 WHERE patient = 'mine'", b)
    assert await _rows(pools, b) == []
    assert len(await _rows(pools, a)) == 1


async def test_cross_tenant_update_and_delete_touch_nothing(pools, two_tenants, adversary):
    a, b = two_tenants
    await _seed(pools, b, "p1", "b-original")
    async with pools.tx(a) as conn:
        status = await conn.execute(f"UPDATE {T} SET value = 'overwritten' WHERE tenant = $1", b)
        adversary.check("pg: UPDATE another tenant's rows", status == "UPDATE 0", status)
        status = await conn.execute(f"DELETE FROM {T} WHERE tenant = $1", b)
        adversary.check("pg: DELETE another tenant's rows", status == "DELETE 0", status)
        status = await conn.execute(
            f"INSERT INTO {T} (tenant, patient, value) VALUES ($1, 'p1', 'x') "
            f"ON CONFLICT (tenant, patient) DO NOTHING", a)
        assert status == "INSERT 0 1"  # the other tenant's row does not even conflict visibly
    assert [tuple(r) for r in await _rows(pools, b)] == [(b, "p1", "b-original", 0)]


async def test_app_tenant_tampering_inside_tx_is_useless(pools, two_tenants, adversary):
    a, b = two_tenants
    await _seed(pools, b)
    async with pools.tx(a) as conn:
        await conn.execute("SET app.tenant = " + repr(b).replace('"', "'"))
        assert await conn.fetchval("SELECT current_setting('app.tenant')") == b
        n = await conn.fetchval(f"SELECT count(*) FROM {T}")
        adversary.check("pg: SET app.tenant = <other> then SELECT", n == 0, f"count {n}")
        await conn.execute("SELECT set_config('app.tenant', $1, true)", b)
        n = await conn.fetchval(f"SELECT count(*) FROM {T} WHERE tenant = $1", b)
        adversary.check("pg: set_config('app.tenant', <other>, true) then SELECT", n == 0, f"count {n}")
    with adversary.attempt("pg: SET LOCAL app.tenant = <other> then INSERT as other", asyncpg.InsufficientPrivilegeError):
        async with pools.tx(a) as conn:
            await conn.execute("SELECT set_config('app.tenant', $1, true)", b)
            await conn.execute(f"INSERT INTO {T} (tenant, patient, value) VALUES ($1, 'x', 'forged')", b)
    assert len(await _rows(pools, b)) == 1


async def test_role_escalation_attempts_are_refused(pools, two_tenants, adversary):
    a, b = two_tenants
    await _seed(pools, b)
    async with pools.tx(a) as conn:
        await conn.execute("RESET ROLE")
        n = await conn.fetchval(f"SELECT count(*) FROM {T} WHERE tenant = $1", b)
        adversary.check("pg: RESET ROLE then SELECT other tenant", n == 0, f"count {n}")
        await conn.execute(f"SET ROLE {APP_ROLE}")  # the group role: allowed, and still bound by the policy
        n = await conn.fetchval(f"SELECT count(*) FROM {T} WHERE tenant = $1", b)
        adversary.check("pg: SET ROLE vigil_app then SELECT other tenant", n == 0, f"count {n}")
    attacks = [
        ("pg: SET ROLE postgres", "SET ROLE postgres"),
        ("pg: SET SESSION AUTHORIZATION postgres", "SET SESSION AUTHORIZATION postgres"),
        ("pg: SET ROLE <other tenant's role>", f'SET ROLE "{tenant_role(b)}"'),
        ("pg: SET row_security = off then SELECT", f"SET LOCAL row_security = off; SELECT * FROM {T}"),
        ("pg: ALTER TABLE ... DISABLE ROW LEVEL SECURITY", f"ALTER TABLE {T} DISABLE ROW LEVEL SECURITY"),
        ("pg: ALTER TABLE ... NO FORCE ROW LEVEL SECURITY", f"ALTER TABLE {T} NO FORCE ROW LEVEL SECURITY"),
        ("pg: DROP POLICY", f"DROP POLICY vigil_tenant_isolation ON {T}"),
        ("pg: CREATE a permissive policy", f"CREATE POLICY open_all ON {T} USING (true)"),
        ("pg: GRANT the other tenant's role to self", f'GRANT "{tenant_role(b)}" TO "{tenant_role(a)}"'),
        ("pg: ALTER own role BYPASSRLS", f'ALTER ROLE "{tenant_role(a)}" BYPASSRLS'),
        ("pg: CREATE VIEW in schema public", f"CREATE VIEW public.leak AS SELECT * FROM {T}"),
        ("pg: read the server's files", "SELECT pg_read_file('postgresql.conf')"),
    ]
    for name, sql in attacks:
        with adversary.attempt(name, asyncpg.InsufficientPrivilegeError):
            async with pools.tx(a) as conn:
                await conn.execute(sql)
    assert len(await _rows(pools, b)) == 1


async def test_commit_inside_tx_does_not_widen_visibility(pools, two_tenants, adversary):
    a, b = two_tenants
    await _seed(pools, b)
    async with pools.tx(a) as conn:
        await conn.execute("COMMIT")  # leave the unit of work; app.tenant (LOCAL) is gone now
        n = await conn.fetchval(f"SELECT count(*) FROM {T}")
        adversary.check("pg: COMMIT inside tenant_tx then SELECT outside it", n == 0, f"count {n}")
        await conn.execute("BEGIN")
    assert len(await _rows(pools, b)) == 1


async def test_copy_to_applies_the_policy(pools, two_tenants, adversary, tmp_path):
    a, b = two_tenants
    await _seed(pools, b, "p1", "b-copy-secret")
    out = tmp_path / "copy.txt"
    async with pools.tx(a) as conn:
        await conn.copy_from_table(T, output=str(out))
    text = out.read_text()
    adversary.check("pg: COPY table TO STDOUT includes other tenant", "b-copy-secret" not in text, f"{len(text)} bytes")


async def test_enable_tenant_rls_and_installed_tenant_tx(pools, two_tenants, admin_pool, adversary):
    """Another module's table: created by its owner, protected with ``enable_tenant_rls``, used
    through the process-wide ``tenant_tx``."""
    from services.core import tenantdb

    a, b = two_tenants
    async with admin_pool.acquire() as conn:
        await conn.execute("CREATE TABLE IF NOT EXISTS vigil_security_rls_helper "
                           "(tenant text NOT NULL, ref text NOT NULL)")
        await tenantdb.enable_tenant_rls(conn, "vigil_security_rls_helper", ("SELECT", "INSERT"))
    with pytest.raises(RuntimeError, match="install"):
        tenantdb.tenant_tx(a)
    tenantdb.install(pools)
    try:
        async with tenantdb.tenant_tx(b) as conn:
            await conn.execute("INSERT INTO vigil_security_rls_helper VALUES ($1, 'b-ref')", b)
        async with tenantdb.tenant_tx(a) as conn:
            await conn.execute("INSERT INTO vigil_security_rls_helper VALUES ($1, 'a-ref')", a)
            refs = [r["ref"] for r in await conn.fetch("SELECT ref FROM vigil_security_rls_helper")]
        adversary.check("pg: table protected by enable_tenant_rls shows other tenant", refs == ["a-ref"], str(refs))
        with adversary.attempt("pg: DELETE where only SELECT, INSERT were granted", asyncpg.InsufficientPrivilegeError):
            async with tenantdb.tenant_tx(a) as conn:
                await conn.execute("DELETE FROM vigil_security_rls_helper WHERE tenant = $1", a)
    finally:
        tenantdb.install(None)


async def test_the_read_connection_sees_only_its_tenant_reads_only_and_survives_a_dropped_connection(
        pools, two_tenants, admin_pool):
    a, b = two_tenants
    await _seed(pools, a, "p1", "a-value")
    await _seed(pools, b, "p1", "b-value")
    query = f"SELECT tenant, value FROM {T} ORDER BY patient"
    assert [tuple(r) for r in await pools.read(a, query)] == [(a, "a-value")]
    assert [tuple(r) for r in await pools.read(b, query)] == [(b, "b-value")]
    who = (await pools.read(a, "SELECT session_user AS s, current_setting('app.tenant', true) AS t"))[0]
    assert (who["s"], who["t"]) == (tenant_role(a), a)
    with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
        await pools.read(b, f"INSERT INTO {T} (tenant, patient, value) VALUES ($1, 'p2', 'x')", b)
    await _seed(pools, b, "p3", "committed")              # committed elsewhere: the next read sees it
    assert [r["value"] for r in await pools.read(b, query)] == ["b-value", "committed"]
    async with admin_pool.acquire() as conn:              # the server drops the read connection
        dropped = await conn.fetchval("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                      "WHERE usename = $1 AND state = 'idle'", tenant_role(b))
    assert dropped >= 1
    assert [r["value"] for r in await pools.read(b, query)] == ["b-value", "committed"]  # replaced, read again
