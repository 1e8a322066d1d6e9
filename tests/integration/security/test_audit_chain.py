"""Audit log: append-only, hash-chained; `vigil audit verify` catches a one-byte change."""
from __future__ import annotations

import asyncio

import asyncpg
import pytest
from typer.testing import CliRunner

from services.core import audit
from tests.fixtures.security import PROBE_TABLE


async def _append_many(pools, tenant: str, n: int) -> None:
    async def one(i: int) -> None:
        async with pools.tx(tenant) as conn:
            await audit.append(conn, tenant, "extraction", "phi.read",
                               [f"DocumentReference/doc-{i}/_history/1"], {"purpose": "irae-extraction", "i": i})
    await asyncio.gather(*(one(i) for i in range(n)))


async def test_concurrent_appends_form_one_linear_chain(pools, provision, admin_pool):
    tenant = await provision()
    await _append_many(pools, tenant, 25)
    async with admin_pool.acquire() as conn:
        result = await audit.verify(conn, tenant)
        rows = await conn.fetch("SELECT chain_seq, prev_hash, hash FROM vigil_audit_log WHERE tenant = $1 "
                                "ORDER BY chain_seq", tenant)
    assert result.ok and result.records == 25
    assert [r["chain_seq"] for r in rows] == list(range(1, 26))
    assert rows[0]["prev_hash"] == audit.GENESIS
    assert all(rows[i]["prev_hash"] == rows[i - 1]["hash"] for i in range(1, 25))
    assert result.chains[tenant] == (25, rows[-1]["hash"])


async def test_audit_commits_with_the_write_it_records(pools, provision, admin_pool):
    tenant = await provision()
    with pytest.raises(asyncpg.UniqueViolationError):
        async with pools.tx(tenant) as conn:
            await audit.append(conn, tenant, "writeback", "phi.write", ["Observation/o1"], {"status": "attempt"})
            await conn.execute(f"INSERT INTO {PROBE_TABLE} (tenant, patient, value) VALUES ($1, 'p', 'v')", tenant)
            await conn.execute(f"INSERT INTO {PROBE_TABLE} (tenant, patient, value) VALUES ($1, 'p', 'v')", tenant)
    async with admin_pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM vigil_audit_log WHERE tenant = $1", tenant) == 0


async def test_details_with_phi_fields_are_refused(pools, provision):
    tenant = await provision()
    async with pools.tx(tenant) as conn:
        with pytest.raises(audit.AuditError, match="may hold PHI"):
            await audit.append(conn, tenant, "extraction", "phi.read", [], {"evidence": {"quote": "severe colitis"}})


def _tamper_sql(column: str) -> str:
    # as a superuser, with triggers skipped for this transaction only (session_replication_role)
    return (f"UPDATE vigil_audit_log SET {column} = overlay({column} placing $3 from $4 for 1) "
            "WHERE tenant = $1 AND chain_seq = $2")


async def _superuser_edit(admin_pool, sql: str, *args) -> None:
    async with admin_pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(sql, *args)


async def test_verify_fails_after_one_byte_changes(pools, provision, admin_pool, stack, monkeypatch):
    tenant = await provision()
    await _append_many(pools, tenant, 6)
    async with admin_pool.acquire() as conn:
        assert (await audit.verify(conn, tenant)).ok
        target = await conn.fetchrow("SELECT seq, actor FROM vigil_audit_log WHERE tenant = $1 AND chain_seq = 4",
                                     tenant)
    original = target["actor"][1]
    await _superuser_edit(admin_pool, _tamper_sql("actor"), tenant, 4, "X" if original != "X" else "Y", 2)
    async with admin_pool.acquire() as conn:
        result = await audit.verify(conn, tenant)
    assert not result.ok and result.records == 3
    assert result.first_bad == {"seq": target["seq"], "tenant": tenant, "chain_seq": 4,
                                "problem": "hash does not match the record's contents"}

    from services.cli import app

    monkeypatch.setenv("VIGIL_POSTGRES_DSN", stack.postgres_dsn)
    runner = CliRunner()
    bad = await asyncio.to_thread(runner.invoke, app, ["audit", "verify", "--tenant", tenant])
    assert bad.exit_code == 1
    assert f"TAMPERED: record seq={target['seq']} (tenant {tenant}, chain_seq 4)" in bad.output
    tail = await asyncio.to_thread(runner.invoke, app, ["audit", "tail", "--tenant", tenant, "-n", "2", "--json"])
    assert tail.exit_code == 0 and tail.output.count('"chain_seq"') == 2

    # put the byte back (the shared table stays verifiable) and the chain verifies again
    await _superuser_edit(admin_pool, _tamper_sql("actor"), tenant, 4, original, 2)
    good = await asyncio.to_thread(runner.invoke, app, ["audit", "verify", "--tenant", tenant])
    assert good.exit_code == 0 and "ok: 6 records in 1 chain(s)" in good.output


@pytest.mark.parametrize("column, position", [("details", 3), ("resources", 5), ("prev_hash", 1), ("hash", 64)])
async def test_verify_catches_a_byte_in_any_field(pools, provision, admin_pool, column, position):
    tenant = await provision()
    await _append_many(pools, tenant, 3)
    async with admin_pool.acquire() as conn:
        before = await conn.fetchval(f"SELECT {column} FROM vigil_audit_log WHERE tenant = $1 AND chain_seq = 2", tenant)
    replacement = "0" if before[position - 1] != "0" else "1"
    await _superuser_edit(admin_pool, _tamper_sql(column), tenant, 2, replacement, position)
    async with admin_pool.acquire() as conn:
        result = await audit.verify(conn, tenant)
    assert not result.ok and result.first_bad["chain_seq"] == 2
    await _superuser_edit(admin_pool, _tamper_sql(column), tenant, 2, before[position - 1], position)
    async with admin_pool.acquire() as conn:
        assert (await audit.verify(conn, tenant)).ok


async def test_verify_catches_a_removed_record(pools, provision, admin_pool):
    tenant = await provision()
    await _append_many(pools, tenant, 4)
    async with admin_pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM vigil_audit_log WHERE tenant = $1 AND chain_seq = 2", tenant)
    await _superuser_edit(admin_pool, "DELETE FROM vigil_audit_log WHERE seq = $1", row["seq"])
    async with admin_pool.acquire() as conn:
        result = await audit.verify(conn, tenant)
    assert not result.ok and result.first_bad["chain_seq"] == 3 and "missing" in result.first_bad["problem"]
    columns = list(row.keys())
    await _superuser_edit(admin_pool, f"INSERT INTO vigil_audit_log ({', '.join(columns)}) VALUES "
                          f"({', '.join(f'${i + 1}' for i in range(len(columns)))})", *row.values())
    async with admin_pool.acquire() as conn:
        assert (await audit.verify(conn, tenant)).ok


async def test_audit_rows_cannot_be_changed(pools, two_tenants, admin_pool, adversary):
    a, b = two_tenants
    await _append_many(pools, a, 2)
    await _append_many(pools, b, 2)
    for name, sql in (("audit: UPDATE own audit record through the tenant role",
                       "UPDATE vigil_audit_log SET actor = 'nobody' WHERE tenant = $1"),
                      ("audit: DELETE own audit records through the tenant role",
                       "DELETE FROM vigil_audit_log WHERE tenant = $1"),
                      ("audit: TRUNCATE the audit log", "TRUNCATE vigil_audit_log")):
        with adversary.attempt(name, asyncpg.InsufficientPrivilegeError):
            async with pools.tx(a) as conn:
                await conn.execute(sql, a) if "$1" in sql else await conn.execute(sql)
    with adversary.attempt("audit: append a record to another tenant's chain", asyncpg.InsufficientPrivilegeError):
        async with pools.tx(a) as conn:
            await audit.append(conn, b, "attacker", "phi.read", ["Patient/x"], {})
    with adversary.attempt("audit: superuser UPDATE without disabling the trigger",
                           asyncpg.InsufficientPrivilegeError):
        async with admin_pool.acquire() as conn:
            await conn.execute("UPDATE vigil_audit_log SET actor = 'x' WHERE tenant = $1", a)
    async with admin_pool.acquire() as conn:
        assert (await audit.verify(conn, a)).ok and (await audit.verify(conn, b)).ok


async def test_platform_chain(admin_pool):
    async with admin_pool.acquire() as conn, conn.transaction():
        record = await audit.append(conn, audit.PLATFORM, "control", "tenant.mode", ["tenant/tsomeone"],
                                    {"from": "silent", "to": "pilot"})
    assert record.tenant == audit.PLATFORM and record.chain_seq >= 1
    async with admin_pool.acquire() as conn:
        assert (await audit.verify(conn, audit.PLATFORM)).ok
