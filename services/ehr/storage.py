"""Resource storage: JSONB rows with full version history, one transaction per request.

``ehr_resources`` holds the current version of every resource (deleted ones flagged),
``ehr_history`` every version ever written. Each row carries its tenant, and every query
here filters on the tenant it was opened for, which comes from the route.

Row-level security backs the filters: the request pool connects as the ``vigil_ehr`` role
(no superuser, no BYPASSRLS), every checkout sets ``app.tenant`` (``Store.connection``), and
each tenant table has a forced policy ``tenant = current_setting('app.tenant')``, so a query
that forgets its tenant filter still sees only its own tenant's rows. Work that spans tenants
(schema steps, tenant creation and listing, the subscription delivery lease) uses
``Store.platform``, the admin pool, explicitly.
"""
from __future__ import annotations

import copy
import hashlib
import json
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import AsyncIterator

import asyncpg

from services.core.logging import get_logger
from services.core.tenantdb import service_role_sql, set_tenant, setting_rls_sql
from services.ehr import hooks
from services.ehr.outcome import gone, not_found, precondition_failed

log = get_logger("ehr.storage")

STEPS = [
    """
    CREATE TABLE IF NOT EXISTS ehr_tenants (
        id text PRIMARY KEY,
        created_at timestamptz NOT NULL DEFAULT now(),
        faults jsonb NOT NULL DEFAULT '{}'::jsonb
    );
    CREATE TABLE IF NOT EXISTS ehr_clients (
        tenant text NOT NULL REFERENCES ehr_tenants (id) ON DELETE CASCADE,
        client_id text NOT NULL,
        jwks jsonb NOT NULL,
        scopes text[] NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant, client_id)
    );
    CREATE TABLE IF NOT EXISTS ehr_jti (
        tenant text NOT NULL,
        client_id text NOT NULL,
        jti text NOT NULL,
        expires_at timestamptz NOT NULL,
        PRIMARY KEY (tenant, client_id, jti)
    );
    CREATE TABLE IF NOT EXISTS ehr_resources (
        tenant text NOT NULL,
        type text NOT NULL,
        id text NOT NULL,
        version integer NOT NULL,
        last_updated timestamptz NOT NULL,
        deleted boolean NOT NULL DEFAULT false,
        content jsonb NOT NULL,
        PRIMARY KEY (tenant, type, id)
    );
    CREATE INDEX IF NOT EXISTS ehr_resources_content ON ehr_resources USING gin (content jsonb_path_ops);
    CREATE INDEX IF NOT EXISTS ehr_resources_updated ON ehr_resources (tenant, type, last_updated, id);
    CREATE TABLE IF NOT EXISTS ehr_history (
        tenant text NOT NULL,
        type text NOT NULL,
        id text NOT NULL,
        version integer NOT NULL,
        last_updated timestamptz NOT NULL,
        deleted boolean NOT NULL DEFAULT false,
        method text NOT NULL,
        content jsonb NOT NULL,
        PRIMARY KEY (tenant, type, id, version)
    );
    CREATE INDEX IF NOT EXISTS ehr_history_updated ON ehr_history (tenant, last_updated);
    CREATE OR REPLACE FUNCTION ehr_ts(v text) RETURNS timestamptz LANGUAGE sql IMMUTABLE AS $$
        SELECT CASE
            WHEN v IS NULL OR v = '' THEN NULL
            WHEN length(v) = 4 THEN (v || '-01-01T00:00:00Z')::timestamptz
            WHEN length(v) = 7 THEN (v || '-01T00:00:00Z')::timestamptz
            WHEN length(v) = 10 THEN (v || 'T00:00:00Z')::timestamptz
            ELSE v::timestamptz END
    $$;
    """,
    # forced row-level security on every tenant table; the request pool's role is EHR_ROLE
    service_role_sql("vigil_ehr")
    + setting_rls_sql("ehr_tenants", "vigil_ehr", column="id", privileges=("SELECT", "UPDATE"))
    + "".join(setting_rls_sql(t, "vigil_ehr") for t in ("ehr_clients", "ehr_jti", "ehr_resources", "ehr_history")),
    # a revoked SMART client keeps its row (listed as revoked); registering it again reinstates it
    "ALTER TABLE ehr_clients ADD COLUMN IF NOT EXISTS revoked_at timestamptz;\n",
]
#: Module ``ehr_notify``: the secret rest-hook notifications are signed with (set through the admin
#: API; never in a FHIR resource, so no FHIR reader learns it).
NOTIFY_STEPS = [
    "ALTER TABLE ehr_tenants ADD COLUMN IF NOT EXISTS notify_signing_secret text;\n",
]
#: The role the request pool connects as (created by STEPS; password set at start-up).
EHR_ROLE = "vigil_ehr"


async def keep_session(conn: asyncpg.Connection) -> None:
    """Pool ``reset``: skip asyncpg's per-release reset query (one round trip per request).
    Connections here carry no session state but ``app.tenant``, which every checkout sets again
    (``Store.connection``): locks are transaction-scoped, no LISTEN, and every transaction is
    committed or rolled back before release."""


async def init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=lambda v: json.dumps(v, separators=(",", ":")),
                              decoder=json.loads, schema="pg_catalog")


def lock_key(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("\x1f".join(parts).encode()).digest()[:8], "big", signed=True)


def now_iso() -> tuple[datetime, str]:
    now = datetime.now(timezone.utc)
    return now, now.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Stored:
    type: str
    id: str
    version: int
    last_updated: datetime
    deleted: bool
    content: dict
    method: str = ""

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'


class DroppedWrite(Exception):
    """Raised inside a transaction to lose its writes on purpose (fault injection)."""


class Tx:
    """One database transaction of one tenant. Writes are recorded as hooks.Change."""

    def __init__(self, conn: asyncpg.Connection, tenant: str):
        self.conn = conn
        self.tenant = tenant
        self.changes: list[hooks.Change] = []
        self.txn: asyncpg.transaction.Transaction | None = None

    async def begin(self) -> None:
        """Open the database transaction at the first lock or write: a request that only reads
        runs its single statement without BEGIN/COMMIT round trips (under READ COMMITTED each
        statement sees the latest commits either way)."""
        if self.txn is None:
            self.txn = self.conn.transaction()
            await self.txn.start()

    async def lock(self, *parts: str) -> None:
        """Serialize writers on a key until this transaction ends (race-safe conditional ops)."""
        await self.begin()
        await self.conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key(self.tenant, *parts))

    async def current(self, rtype: str, rid: str) -> Stored | None:
        row = await self.conn.fetchrow(
            "SELECT version, last_updated, deleted, content FROM ehr_resources WHERE tenant=$1 AND type=$2 AND id=$3",
            self.tenant, rtype, rid)
        return Stored(rtype, rid, row["version"], row["last_updated"], row["deleted"], row["content"]) if row else None

    async def read(self, rtype: str, rid: str) -> Stored:
        found = await self.current(rtype, rid)
        if found is None:
            raise not_found(f"{rtype}/{rid} is not known")
        if found.deleted:
            raise gone(f"{rtype}/{rid} was deleted (version {found.version})")
        return found

    async def vread(self, rtype: str, rid: str, version: int) -> Stored:
        row = await self.conn.fetchrow(
            "SELECT last_updated, deleted, method, content FROM ehr_history "
            "WHERE tenant=$1 AND type=$2 AND id=$3 AND version=$4", self.tenant, rtype, rid, version)
        if row is None:
            raise not_found(f"{rtype}/{rid} has no version {version}")
        if row["deleted"]:
            raise gone(f"{rtype}/{rid} version {version} is a deletion")
        return Stored(rtype, rid, version, row["last_updated"], False, row["content"], row["method"])

    async def _write(self, rtype: str, rid: str, version: int, resource: dict | None, method: str) -> Stored:
        await self.begin()
        when, stamp = now_iso()
        deleted = resource is None
        if deleted:
            content = {"resourceType": rtype, "id": rid, "meta": {"versionId": str(version), "lastUpdated": stamp}}
        else:
            content = copy.copy(resource)
            content["id"] = rid
            meta = dict(content.get("meta") or {})
            meta["versionId"] = str(version)
            meta["lastUpdated"] = stamp
            content["meta"] = meta
        # One statement (one round trip) writes the history row and the current row.
        history = ("WITH h AS (INSERT INTO ehr_history (tenant, type, id, version, last_updated, deleted, method, "
                   "content) VALUES ($1,$2,$3,$4,$5,$6,$8,$7)) ")
        if version == 1:
            await self.conn.execute(
                history + "INSERT INTO ehr_resources (tenant, type, id, version, last_updated, deleted, content) "
                "VALUES ($1,$2,$3,$4,$5,$6,$7)", self.tenant, rtype, rid, version, when, deleted, content, method)
        else:
            await self.conn.execute(
                history + "UPDATE ehr_resources SET version=$4, last_updated=$5, deleted=$6, content=$7 "
                "WHERE tenant=$1 AND type=$2 AND id=$3", self.tenant, rtype, rid, version, when, deleted, content,
                method)
        action = {"POST": "create", "PUT": "update" if version > 1 else "create", "DELETE": "delete"}[method]
        change = hooks.Change(self.tenant, rtype, rid, version, action, None if deleted else content)
        for hook in hooks.IN_TRANSACTION:
            await hook(self.conn, change)
        self.changes.append(change)
        return Stored(rtype, rid, version, when, deleted, content, method)

    async def create(self, rtype: str, resource: dict, rid: str | None = None) -> Stored:
        return await self._write(rtype, rid or str(uuid.uuid4()), 1, resource, "POST")

    async def update(self, rtype: str, rid: str, resource: dict, if_match: int | None = None) -> tuple[Stored, bool]:
        """Update (or create with this id). Returns (stored, created)."""
        await self.lock(rtype, rid)
        found = await self.current(rtype, rid)
        if if_match is not None:
            if found is None:
                raise precondition_failed(f"If-Match given but {rtype}/{rid} does not exist")
            if found.version != if_match:
                raise precondition_failed(f"{rtype}/{rid} is at version {found.version}, not {if_match} (If-Match)")
        version = 1 if found is None else found.version + 1
        stored = await self._write(rtype, rid, version, resource, "PUT")
        return stored, found is None or found.deleted

    async def delete(self, rtype: str, rid: str) -> Stored | None:
        """Delete; None when there was nothing (or it was already deleted)."""
        await self.lock(rtype, rid)
        found = await self.current(rtype, rid)
        if found is None or found.deleted:
            return None
        return await self._write(rtype, rid, found.version + 1, None, "DELETE")

    async def history(self, rtype: str | None, rid: str | None, since: datetime | None,
                      count: int, offset: int) -> tuple[int, list[Stored]]:
        where = ["tenant=$1"]
        args: list = [self.tenant]
        for column, value in (("type", rtype), ("id", rid)):
            if value is not None:
                args.append(value)
                where.append(f"{column}=${len(args)}")
        if since is not None:
            args.append(since)
            where.append(f"last_updated >= ${len(args)}")
        clause = " AND ".join(where)
        total = await self.conn.fetchval(f"SELECT count(*) FROM ehr_history WHERE {clause}", *args)
        rows = await self.conn.fetch(
            f"SELECT type, id, version, last_updated, deleted, method, content FROM ehr_history WHERE {clause} "
            f"ORDER BY last_updated DESC, version DESC LIMIT {int(count)} OFFSET {int(offset)}", *args)
        return total, [Stored(r["type"], r["id"], r["version"], r["last_updated"], r["deleted"], r["content"],
                              r["method"]) for r in rows]


class Store:
    """``pool``: connections as ``vigil_ehr``, only ever used through ``connection(tenant)`` /
    ``transaction(tenant)``. ``platform``: the admin pool for the few cross-tenant paths
    (defaults to ``pool`` for callers that run without RLS, e.g. a superuser pool in tools)."""

    def __init__(self, pool: asyncpg.Pool, platform: asyncpg.Pool | None = None):
        self.pool = pool
        self.platform = platform or pool

    @asynccontextmanager
    async def connection(self, tenant: str) -> AsyncIterator[asyncpg.Connection]:
        """A checkout for one tenant: ``app.tenant`` is set before the caller's first statement."""
        async with self.pool.acquire() as conn:
            await set_tenant(conn, tenant)
            yield conn

    @asynccontextmanager
    async def transaction(self, tenant: str, *, drop_writes: bool = False) -> AsyncIterator[Tx]:
        """A transaction for one tenant. With ``drop_writes`` everything runs (ids, versions and
        responses are real) and is then rolled back: the dropped-write fault."""
        async with self.connection(tenant) as conn:
            tx = Tx(conn, tenant)
            try:
                yield tx
            except BaseException:
                if tx.txn is not None:
                    await tx.txn.rollback()
                raise
            if tx.txn is not None:
                if drop_writes and tx.changes:
                    await tx.txn.rollback()
                    log.warning("ehr.fault.dropped_write", tenant=tenant, writes=len(tx.changes))
                    return
                await tx.txn.commit()
        for change in tx.changes:
            for hook in hooks.POST_COMMIT:
                try:
                    await hook(change)
                except Exception as exc:  # the write is committed; a failed hook must not turn it into an error
                    log.error("ehr.hook.failed", tenant=tenant, hook=getattr(hook, "__name__", "?"),
                              error=type(exc).__name__)
