"""Tenant EHRs, their registered SMART clients, the assertion replay cache and fault settings.

A revoked client keeps its row (``revoked_at`` set): the token endpoint no longer knows it and
access tokens already issued to it are refused on their next call (``client_active``).

A tenant's own rows (its fault settings, clients, assertion ids) are read and written through
``Store.connection(tenant)``, under row-level security; only creating and listing tenants
uses the platform pool."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone

from services.ehr import faults as faults_mod
from services.ehr import families
from services.ehr.storage import Store


@dataclass
class TenantState:
    id: str
    faults: faults_mod.Faults = field(default_factory=faults_mod.Faults)
    family: str = families.DEFAULT


@dataclass(frozen=True)
class Client:
    tenant: str
    client_id: str
    jwks: dict
    scopes: tuple[str, ...]


@dataclass(frozen=True)
class ClientInfo:
    client_id: str
    scopes: tuple[str, ...]
    kids: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None

    def as_dict(self) -> dict:
        return {"client_id": self.client_id, "scopes": list(self.scopes), "kids": list(self.kids),
                "created_at": self.created_at.isoformat(),
                "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None}


class Registry:
    """Backed by PostgreSQL; tenant state (with faults) and whether each client is active are
    cached in this process, which is the one that serves the admin API, so the caches are always
    current for a single server process."""

    def __init__(self, store: Store):
        self.store = store
        self._tenants: dict[str, TenantState] = {}
        self._active: dict[tuple[str, str], bool] = {}

    async def tenant(self, tenant: str) -> TenantState | None:
        state = self._tenants.get(tenant)
        if state is None:
            async with self.store.connection(tenant) as conn:
                row = await conn.fetchrow("SELECT faults, family FROM ehr_tenants WHERE id=$1", tenant)
            if row is None:
                return None
            state = TenantState(tenant, faults_mod.from_stored(row["faults"]), row["family"])
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

    async def set_family(self, tenant: str, family: str) -> None:
        async with self.store.connection(tenant) as conn:
            await conn.execute("UPDATE ehr_tenants SET family=$2 WHERE id=$1", tenant, family)
        state = await self.tenant(tenant)
        if state is not None:
            state.family = family

    async def set_notify_secret(self, tenant: str, secret: str | None) -> None:
        """The secret this EHR signs the tenant's rest-hook notifications with (None: stop signing)."""
        async with self.store.connection(tenant) as conn:
            await conn.execute("UPDATE ehr_tenants SET notify_signing_secret=$2 WHERE id=$1", tenant, secret)

    async def notify_secret(self, tenant: str) -> str | None:
        async with self.store.connection(tenant) as conn:
            return await conn.fetchval("SELECT notify_signing_secret FROM ehr_tenants WHERE id=$1", tenant)

    async def put_client(self, client: Client) -> None:
        async with self.store.connection(client.tenant) as conn:
            await conn.execute(
                "INSERT INTO ehr_clients (tenant, client_id, jwks, scopes) VALUES ($1,$2,$3,$4) "
                "ON CONFLICT (tenant, client_id) DO UPDATE SET jwks=EXCLUDED.jwks, scopes=EXCLUDED.scopes, "
                "revoked_at=NULL",
                client.tenant, client.client_id, client.jwks, list(client.scopes))
        self._active[(client.tenant, client.client_id)] = True

    async def client(self, tenant: str, client_id: str) -> Client | None:
        """An active (not revoked) client, or None."""
        async with self.store.connection(tenant) as conn:
            row = await conn.fetchrow("SELECT jwks, scopes FROM ehr_clients WHERE tenant=$1 AND client_id=$2 "
                                      "AND revoked_at IS NULL", tenant, client_id)
        if row is None:
            return None
        jwks = row["jwks"] if isinstance(row["jwks"], dict) else json.loads(row["jwks"])
        return Client(tenant, client_id, jwks, tuple(row["scopes"]))

    async def list_clients(self, tenant: str) -> list[ClientInfo]:
        async with self.store.connection(tenant) as conn:
            rows = await conn.fetch("SELECT client_id, jwks, scopes, created_at, revoked_at FROM ehr_clients "
                                    "WHERE tenant=$1 ORDER BY client_id", tenant)
        result = []
        for row in rows:
            jwks = row["jwks"] if isinstance(row["jwks"], dict) else json.loads(row["jwks"])
            kids = tuple(str(k.get("kid", "")) for k in jwks.get("keys", []) if isinstance(k, dict))
            result.append(ClientInfo(row["client_id"], tuple(row["scopes"]), kids, row["created_at"],
                                     row["revoked_at"]))
        return result

    async def revoke_client(self, tenant: str, client_id: str) -> datetime | None:
        """Revoke ``client_id`` now (or report when it was revoked); None when there is no such client."""
        async with self.store.connection(tenant) as conn:
            revoked = await conn.fetchval(
                "UPDATE ehr_clients SET revoked_at = COALESCE(revoked_at, now()) WHERE tenant=$1 AND client_id=$2 "
                "RETURNING revoked_at", tenant, client_id)
        if revoked is not None:
            self._active[(tenant, client_id)] = False
        return revoked

    async def client_active(self, tenant: str, client_id: str) -> bool:
        """Whether access tokens of ``client_id`` are still honoured (cached; revocation updates it)."""
        key = (tenant, client_id)
        if key not in self._active:
            async with self.store.connection(tenant) as conn:
                self._active[key] = bool(await conn.fetchval(
                    "SELECT true FROM ehr_clients WHERE tenant=$1 AND client_id=$2 AND revoked_at IS NULL",
                    tenant, client_id))
        return self._active[key]

    async def use_jti(self, tenant: str, client_id: str, jti: str, exp: float) -> bool:
        """Record an assertion id; False when it was seen before (a replay)."""
        expires = datetime.fromtimestamp(exp, timezone.utc)
        async with self.store.connection(tenant) as conn:
            await conn.execute("DELETE FROM ehr_jti WHERE tenant=$1 AND expires_at < now() - interval '1 hour'", tenant)
            status = await conn.execute(
                "INSERT INTO ehr_jti (tenant, client_id, jti, expires_at) VALUES ($1,$2,$3,$4) ON CONFLICT DO NOTHING",
                tenant, client_id, jti, expires)
        return status.endswith(" 1")
