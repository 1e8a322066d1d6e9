"""The EHR sandbox's storage: a query run through tenant A's transaction that names tenant B,
or forgets its tenant filter, sees and changes none of B's rows (forced row-level security on
every tenant table; the request pool connects as ``vigil_ehr``, which has no way around it)."""
from __future__ import annotations

import os
import uuid

import asyncpg
import pytest

from services.core.db import ensure_schema
from services.core.secrets import SecretSettings
from services.core.tenantdb import service_password
from services.ehr import storage
from services.ehr.app import open_services
from services.ehr.config import EhrSettings
from services.ehr.registry import Client
from services.ehr.subscriptions import store as substore

TENANT_TABLES = ("ehr_resources", "ehr_history", "ehr_clients", "ehr_jti", "ehr_sub_state", "ehr_sub_events")
JWKS = {"keys": [{"kty": "EC", "crv": "P-384", "alg": "ES384", "x": "x", "y": "y"}]}


def _tenant() -> str:
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
async def ehr_services(stack):
    services = await open_services(EhrSettings.from_env({**os.environ, "VIGIL_EHR_ADMIN_SECRET": "x" * 24},
                                                        core=stack))
    await ensure_schema(services.store.platform, "ehr_subscriptions", substore.STEPS)
    try:
        yield services
    finally:
        await services.store.pool.close()
        await services.store.platform.close()


async def _fill(services, tenant: str) -> None:
    """One row of ``tenant`` in every tenant table."""
    await services.registry.create_tenant(tenant)
    await services.registry.put_client(Client(tenant, "c1", JWKS, ("system/*.rs",)))
    await services.registry.use_jti(tenant, "c1", uuid.uuid4().hex, 4_000_000_000)
    async with services.store.transaction(tenant) as tx:
        await tx.create("Patient", {"resourceType": "Patient", "name": [{"family": "Rls"}]}, rid=f"p-{tenant}")
    await services.store.platform.execute(
        "INSERT INTO ehr_sub_state (tenant, id, topic, status, spec, fhir_base) VALUES ($1,'s1','urn:t','off','{}','x')",
        tenant)
    await services.store.platform.execute(
        "INSERT INTO ehr_sub_events (tenant, subscription, number, occurred_at, focus_type, focus_id, focus_version, "
        "action) VALUES ($1,'s1',1,now(),'Patient',$2,1,'create')", tenant, f"p-{tenant}")


async def test_a_transaction_sees_and_changes_only_its_tenant(ehr_services, adversary):
    a, b = _tenant(), _tenant()
    await _fill(ehr_services, a)
    await _fill(ehr_services, b)
    store = ehr_services.store

    async with store.transaction(a) as tx:
        assert await tx.conn.fetchval("SELECT count(*) FROM ehr_resources WHERE tenant=$1", a) == 1  # control
        for table in TENANT_TABLES:
            seen = await tx.conn.fetchval(f"SELECT count(*) FROM {table} WHERE tenant=$1", b)
            adversary.check(f"ehr storage: A's transaction selects B's rows of {table}", seen == 0,
                            f"{seen} rows visible")
        others = await tx.conn.fetchval("SELECT count(*) FROM ehr_resources WHERE tenant <> $1", a)
        adversary.check("ehr storage: query without a tenant filter (ehr_resources)", others == 0,
                        f"{others} foreign rows")
        others = await tx.conn.fetchval("SELECT count(*) FROM ehr_tenants WHERE id <> $1", a)
        adversary.check("ehr storage: list other tenants' fault settings", others == 0, f"{others} foreign rows")
        await tx.begin()
        status = await tx.conn.execute("UPDATE ehr_resources SET content = '{}'::jsonb WHERE tenant=$1", b)
        adversary.check("ehr storage: A's transaction updates B's resources", status == "UPDATE 0", status)
        status = await tx.conn.execute("DELETE FROM ehr_history WHERE tenant=$1", b)
        adversary.check("ehr storage: A's transaction deletes B's history", status == "DELETE 0", status)
        status = await tx.conn.execute("UPDATE ehr_tenants SET faults = '{\"error_rate\": 1}'::jsonb WHERE id=$1", b)
        adversary.check("ehr storage: A's transaction sets B's fault settings", status == "UPDATE 0", status)

    for name, sql in [
        ("ehr storage: insert a resource as tenant B through A's transaction",
         "INSERT INTO ehr_resources (tenant, type, id, version, last_updated, content) "
         "VALUES ($1, 'Patient', 'planted', 1, now(), '{}'::jsonb)"),
        ("ehr storage: register a client for tenant B through A's transaction",
         "INSERT INTO ehr_clients (tenant, client_id, jwks, scopes) VALUES ($1, 'planted', '{}', '{system/*.cruds}')"),
        ("ehr storage: move A's resource into tenant B", "UPDATE ehr_resources SET tenant=$1 WHERE tenant <> $1"),
    ]:
        with adversary.attempt(name, asyncpg.InsufficientPrivilegeError):
            async with store.transaction(a) as tx:
                await tx.begin()
                await tx.conn.execute(sql, b)
    with adversary.attempt("ehr storage: SET ROLE to the superuser inside a transaction",
                           asyncpg.InsufficientPrivilegeError):
        async with store.transaction(a) as tx:
            await tx.conn.execute("SET ROLE postgres")
    with adversary.attempt("ehr storage: create a tenant with the request role",
                           asyncpg.InsufficientPrivilegeError):
        async with store.transaction(a) as tx:
            await tx.conn.execute("INSERT INTO ehr_tenants (id) VALUES ($1)", _tenant())

    # nothing of B changed, seen through B's own transaction
    async with store.transaction(b) as tx:
        row = await tx.conn.fetchrow("SELECT version, content FROM ehr_resources WHERE tenant=$1", b)
        assert row["version"] == 1 and row["content"]["name"][0]["family"] == "Rls"
        assert await tx.conn.fetchval("SELECT faults FROM ehr_tenants WHERE id=$1", b) == {}


async def test_the_request_role_without_a_tenant_sees_nothing(stack, ehr_services, adversary):
    a = _tenant()
    await _fill(ehr_services, a)
    conn = await asyncpg.connect(stack.postgres_dsn, user=storage.EHR_ROLE,
                                 password=service_password(SecretSettings.from_env(), storage.EHR_ROLE))
    try:
        assert await conn.fetchval("SELECT current_setting('app.tenant', true)") in (None, "")
        for table in TENANT_TABLES:
            seen = await conn.fetchval(f"SELECT count(*) FROM {table}")
            adversary.check(f"ehr storage: request role with no tenant set reads {table}", seen == 0,
                            f"{seen} rows visible")
    finally:
        await conn.close()
