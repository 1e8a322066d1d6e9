"""Tenant EHRs, their registered SMART clients, the assertion replay cache and fault settings.

A tenant's own rows (its fault settings, clients, assertion ids) are read and written through
``Store.connection(tenant)``, under row-level security; only creating and listing tenants
uses the platform pool."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone

from services.ehr import faults as faults_mod
from services.ehr.storage import Store


@dataclass
class TenantState:
    id: str
    faults: faults_mod.Faults = field(default_factory=faults_mod.Faults)


@dataclass(frozen=True)
class Client:
    tenant: str
    client_id: str
    jwks: dict
    scopes: tuple[str, ...]


class Registry:
    """Backed by PostgreSQL; tenant state (with faults) is cached in this process, which is the
    one that serves the admin API, so the cache is always current for a single server process."""

    def __init__(self, store: Store):
        self.store = store
        self._tenants: dict[str, TenantState] = {}

    async def tenant(self, tenant: str) -> TenantState | None:
        state = self._tenants.get(tenant)
        if state is None:
            async with self.store.connection(tenant) as conn:
                row = await conn.fetchrow("SELECT faults FROM ehr_tenants WHERE id=$1", tenant)
            if row is None:
                return None
            state = TenantState(tenant, faults_mod.from_stored(row["faults"]))
            self._tenants[tenant] = state
        return state

    async def create_tenant(self, tenant: str) -> bool:
        """True when created now, False when it existed."""
        status = await self.store.platform.execute("INSERT INTO ehr_tenants (id) VALUES ($1) ON CONFLICT DO NOTHING", tenant)
        return status.endswith(" 1")

    async def list_tenants(self) -> list[str]:
        return [r["id"] for r in await self.store.platform.fetch("SELECT id FROM ehr_tenants ORDER BY id")]

    async def set_faults(self, tenant: str, faults: faults_mod.Faults) -> None:
        data = {k: v for k, v in faults.as_dict().items() if k != "outage_remaining_s"}
        async with self.store.connection(tenant) as conn:
            await conn.execute("UPDATE ehr_tenants SET faults=$2 WHERE id=$1", tenant, data)
        state = await self.tenant(tenant)
        if state is not None:
            state.faults = faults

    async def put_client(self, client: Client) -> None:
        async with self.store.connection(client.tenant) as conn:
            await conn.execute(
                "INSERT INTO ehr_clients (tenant, client_id, jwks, scopes) VALUES ($1,$2,$3,$4) "
                "ON CONFLICT (tenant, client_id) DO UPDATE SET jwks=EXCLUDED.jwks, scopes=EXCLUDED.scopes",
                client.tenant, client.client_id, client.jwks, list(client.scopes))

    async def client(self, tenant: str, client_id: str) -> Client | None:
        async with self.store.connection(tenant) as conn:
            row = await conn.fetchrow("SELECT jwks, scopes FROM ehr_clients WHERE tenant=$1 AND client_id=$2",
                                      tenant, client_id)
        if row is None:
            return None
        jwks = row["jwks"] if isinstance(row["jwks"], dict) else json.loads(row["jwks"])
        return Client(tenant, client_id, jwks, tuple(row["scopes"]))

    async def use_jti(self, tenant: str, client_id: str, jti: str, exp: float) -> bool:
        """Record an assertion id; False when it was seen before (a replay)."""
        expires = datetime.fromtimestamp(exp, timezone.utc)
        async with self.store.connection(tenant) as conn:
            await conn.execute("DELETE FROM ehr_jti WHERE tenant=$1 AND expires_at < now() - interval '1 hour'", tenant)
            status = await conn.execute(
                "INSERT INTO ehr_jti (tenant, client_id, jti, expires_at) VALUES ($1,$2,$3,$4) ON CONFLICT DO NOTHING",
                tenant, client_id, jti, expires)
        return status.endswith(" 1")
