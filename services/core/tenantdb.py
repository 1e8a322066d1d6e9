"""PostgreSQL tenant isolation: per-tenant roles and pools, one transaction per unit of work.

Roles
  ``vigil_app`` is a NOLOGIN group role (no superuser, no BYPASSRLS) that holds the table
  grants. Each tenant has a LOGIN role ``vigil_tenant_<tenant>``, a member of ``vigil_app``,
  whose password is derived from the master secret (``services.core.secrets``). A tenant's
  pool connects *as* that role, so ``RESET ROLE`` or ``SET ROLE`` inside a transaction can
  never reach a more powerful role.

Policy
  ``enable_tenant_rls`` turns on and *forces* row-level security on a table with one policy
  (USING and WITH CHECK)::

      tenant = current_setting('app.tenant', true)
      AND session_user = 'vigil_tenant_' || tenant

  ``app.tenant`` is set with ``SET LOCAL`` by ``tenant_tx``; the ``session_user`` term is what
  makes tampering useless: a query that runs ``SET app.tenant = 'other'`` still connects as
  its own tenant's login role, which a non-superuser cannot change. The platform (admin) DSN
  must be a superuser or BYPASSRLS role; it migrates schemas and runs cross-tenant checks
  such as ``vigil audit verify``.

Units of work
  ``async with pools.tx(tenant) as conn:`` (or ``tenant_tx(tenant)`` after ``install``)
  checks out a connection, opens a transaction, sets ``app.tenant`` and a statement timeout
  with ``SET LOCAL``, commits on success and rolls back on any error. A transaction that an
  error aborted but whose exception the caller swallowed is not silently "committed": the
  commit comes back as ROLLBACK and ``TransactionAborted`` is raised. A connection whose
  rollback fails is terminated instead of returned; every release resets session state
  (asyncpg's reset: ROLLBACK if needed, ``RESET ALL``, ``CLOSE ALL``, ``UNLISTEN *``, advisory
  unlocks), and every unit starts with ``RESET ROLE`` (``role`` is not covered by RESET ALL),
  so nothing from one unit of work reaches the next.

Small reads
  ``await pools.read(tenant, query, *args)`` runs one read-only statement in a single round
  trip on the tenant's own read connection (one per tenant per process, outside the pool,
  connected as the tenant's role, ``app.tenant`` and the statement timeout set for the whole
  session, every transaction read-only): no checkout, no BEGIN / COMMIT, no reset on release.
  Each statement sees what was committed before it started. For frequent tiny reads such as
  the mode and kill-switch rows, and for reads made while a unit of work is open: the keyring's
  key lookups run inside its callers' units of work, and a second checkout from the same pool
  would wait for ever once every connection is held by a caller waiting for it.
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from typing import AsyncIterator

import asyncpg

from services.core.config import Settings
from services.core.errors import FatalError
from services.core.secrets import SecretSettings
from services.core.tenancy import check_tenant_id
from services.core.tenantcache import TenantCache

APP_ROLE = "vigil_app"
TENANT_ROLE_PREFIX = "vigil_tenant_"
POLICY_NAME = "vigil_tenant_isolation"
#: Per-tenant pool bounds: a handful of connections per tenant per process keeps 20 tenants
#: x 4 services under PostgreSQL's default max_connections=100 at min size 0..1.
TENANT_POOL_MIN = 0
TENANT_POOL_MAX = 4
#: Default statement timeout inside a unit of work; a longer query is cancelled.
STATEMENT_TIMEOUT_MS = 30_000
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_DML = ("SELECT", "INSERT", "UPDATE", "DELETE")


class TransactionAborted(FatalError):
    """An error inside the unit of work was caught and ignored; nothing was committed."""

    code = "transaction_aborted"


class TenantRoleMissing(FatalError):
    """The tenant's PostgreSQL role does not exist: onboard it (`vigil tenant add`)."""

    code = "tenant_role_missing"


def tenant_role(tenant: str) -> str:
    return TENANT_ROLE_PREFIX + check_tenant_id(tenant)


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _check_table(table: str) -> str:
    if not _IDENTIFIER.match(table):
        raise ValueError(f"table name {table!r} is not a plain lower-case identifier")
    return table


def _lock_id(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big", signed=True)


def app_role_sql() -> str:
    """DDL creating ``vigil_app`` if missing (serialized: roles are cluster-wide)."""
    return f"""
DO $vigil$
BEGIN
    PERFORM pg_advisory_xact_lock({_lock_id('vigil_roles')});
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
        CREATE ROLE {APP_ROLE} NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
END
$vigil$;
GRANT USAGE ON SCHEMA public TO {APP_ROLE};
"""


def tenant_rls_sql(table: str, privileges: tuple[str, ...] = _DML) -> str:
    """DDL that enables and forces tenant RLS on ``table`` (a ``tenant text`` column) and
    grants ``privileges`` to ``vigil_app``. Usable as an ``ensure_schema`` step; idempotent.

    The text returned is part of other modules' migration checksums: never edit it; a changed
    policy is a new function whose DDL those modules add as a new step."""
    table = _check_table(table)
    bad = [p for p in privileges if p not in _DML]
    if bad or not privileges:
        raise ValueError(f"privileges must be a non-empty subset of {_DML}, got {privileges}")
    expr = (f"tenant = current_setting('app.tenant', true) "
            f"AND session_user = ('{TENANT_ROLE_PREFIX}' || tenant)::name")
    return app_role_sql() + f"""
ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
ALTER TABLE {table} FORCE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS {POLICY_NAME} ON {table};
CREATE POLICY {POLICY_NAME} ON {table} USING ({expr}) WITH CHECK ({expr});
REVOKE ALL ON {table} FROM PUBLIC;
GRANT {', '.join(privileges)} ON {table} TO {APP_ROLE};
"""


async def enable_tenant_rls(conn: asyncpg.Connection, table: str, privileges: tuple[str, ...] = _DML) -> None:
    """Run ``tenant_rls_sql`` on an admin connection (the table owner or a superuser)."""
    await conn.execute(tenant_rls_sql(table, privileges))


async def provision_tenant_role(admin: asyncpg.Connection, tenant: str, secrets: SecretSettings) -> str:
    """Create or update the tenant's login role (idempotent); returns the role name."""
    role = tenant_role(tenant)
    password = secrets.tenant_password("postgres", tenant)
    async with admin.transaction():
        await admin.execute(app_role_sql())
        exists = await admin.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
        verb = "ALTER" if exists else "CREATE"
        await admin.execute(f"{verb} ROLE {quote_ident(role)} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB "
                            f"NOCREATEROLE NOREPLICATION INHERIT CONNECTION LIMIT {TENANT_POOL_MAX * 16} "
                            f"PASSWORD {quote_literal(password)}")
        await admin.execute(f"GRANT {APP_ROLE} TO {quote_ident(role)}")
    return role


class TenantPools:
    """One asyncpg pool per tenant, each connected as that tenant's role.

    Create one per process (per event loop); ``close()`` on shutdown."""

    def __init__(self, settings: Settings, secrets: SecretSettings | None = None, *,
                 min_size: int = TENANT_POOL_MIN, max_size: int = TENANT_POOL_MAX,
                 statement_timeout_ms: int = STATEMENT_TIMEOUT_MS):
        self.settings = settings
        self.secrets = secrets or SecretSettings.from_env()
        self.min_size, self.max_size = min_size, max_size
        self.statement_timeout_ms = statement_timeout_ms
        self._pools: TenantCache[asyncpg.Pool] = TenantCache(name="postgres")
        self._readers: dict[str, asyncpg.Connection] = {}
        self._reader_locks: dict[str, asyncio.Lock] = {}

    async def pool(self, tenant: str) -> asyncpg.Pool:
        tenant = check_tenant_id(tenant)

        async def make() -> asyncpg.Pool:
            with _role_missing(tenant):
                return await asyncpg.create_pool(
                    self.settings.postgres_dsn, user=tenant_role(tenant),
                    password=self.secrets.tenant_password("postgres", tenant),
                    min_size=self.min_size, max_size=self.max_size)

        return await self._pools.get(tenant, make)

    @contextlib.asynccontextmanager
    async def tx(self, tenant: str, *, readonly: bool = False,
                 statement_timeout_ms: int | None = None) -> AsyncIterator[asyncpg.Connection]:
        """One unit of work for ``tenant``: its own checkout and its own transaction."""
        pool = await self.pool(tenant)
        timeout = self.statement_timeout_ms if statement_timeout_ms is None else statement_timeout_ms
        with _role_missing(tenant):
            conn = await pool.acquire()
        try:
            # one round trip: the transaction, the session's own role (undoing any SET ROLE a
            # previous unit committed), the tenant and the timeout (tenant ids are [a-z0-9-] only)
            await conn.execute(f"{'BEGIN READ ONLY' if readonly else 'BEGIN'}; RESET ROLE; "
                               f"SELECT set_config('app.tenant', {quote_literal(tenant)}, true), "
                               f"set_config('statement_timeout', '{int(timeout)}ms', true)")
            try:
                yield conn
            except BaseException:
                await _rollback_or_terminate(conn)
                raise
            try:
                status = await conn.execute("COMMIT")
            except BaseException:
                await _rollback_or_terminate(conn)
                raise
            if status == "ROLLBACK":
                raise TransactionAborted(f"tenant {tenant}: a statement failed inside the unit of work and its error "
                                         "was caught; the transaction was rolled back, nothing was committed")
        finally:
            await pool.release(conn)

    async def _reader(self, tenant: str) -> asyncpg.Connection:
        conn = self._readers.get(tenant)
        if conn is not None and not conn.is_closed():
            return conn
        with _role_missing(tenant):
            conn = await asyncpg.connect(self.settings.postgres_dsn, user=tenant_role(tenant),
                                         password=self.secrets.tenant_password("postgres", tenant))
        try:
            await conn.execute("SET default_transaction_read_only = on; "
                               f"SELECT set_config('app.tenant', {quote_literal(tenant)}, false), "
                               f"set_config('statement_timeout', '{int(self.statement_timeout_ms)}ms', false)")
        except BaseException:
            conn.terminate()
            raise
        self._readers[tenant] = conn
        return conn

    async def read(self, tenant: str, query: str, *args) -> list[asyncpg.Record]:
        """One read-only statement for ``tenant`` in one round trip (see "Small reads" above). A
        read connection that broke (server restart, idle disconnect) is replaced and the read sent
        once more; a failing statement (a missing table, a timeout) raises as usual."""
        tenant = check_tenant_id(tenant)
        lock = self._reader_locks.setdefault(tenant, asyncio.Lock())
        async with lock:  # one statement at a time on a connection
            for attempt in (1, 2):
                conn = await self._reader(tenant)
                try:
                    return await conn.fetch(query, *args)
                except (asyncpg.PostgresConnectionError, asyncpg.AdminShutdownError) as exc:
                    broken = exc                # the server dropped the connection
                except asyncpg.PostgresError:
                    raise                       # the statement failed; the connection is fine
                except Exception as exc:        # the client side of a broken connection
                    broken = exc
                except BaseException:           # cancelled mid-statement: the connection's state is unknown
                    self._drop_reader(tenant, conn)
                    raise
                self._drop_reader(tenant, conn)
                if attempt == 2:
                    raise broken
        raise AssertionError("unreachable")

    def _drop_reader(self, tenant: str, conn: asyncpg.Connection) -> None:
        if self._readers.get(tenant) is conn:
            del self._readers[tenant]
        conn.terminate()

    async def close(self) -> None:
        readers, self._readers = list(self._readers.values()), {}
        for conn in readers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), timeout=5)
            if not conn.is_closed():
                conn.terminate()
        await self._pools.close()


@contextlib.contextmanager
def _role_missing(tenant: str):
    try:
        yield
    except asyncpg.InvalidAuthorizationSpecificationError:
        raise TenantRoleMissing(f"no PostgreSQL role for tenant {tenant}; run `vigil tenant add {tenant}`") from None


async def _rollback_or_terminate(conn: asyncpg.Connection) -> None:
    if conn.is_closed():
        return
    try:
        await asyncio.wait_for(conn.execute("ROLLBACK"), timeout=5)
    except Exception:
        conn.terminate()  # the pool replaces a terminated connection instead of reusing it


_installed: TenantPools | None = None


def install(pools: TenantPools | None) -> None:
    """Make ``pools`` the process default for ``tenant_tx`` (``None`` uninstalls)."""
    global _installed
    _installed = pools


def tenant_tx(tenant: str, **kwargs) -> contextlib.AbstractAsyncContextManager[asyncpg.Connection]:
    """``async with tenant_tx(tenant) as conn:`` on the installed ``TenantPools``."""
    if _installed is None:
        raise RuntimeError("tenantdb.install(TenantPools(settings)) must run at start-up before tenant_tx")
    return _installed.tx(tenant, **kwargs)


# --- one service role, tenant from the transaction's setting --------------------------------
#
# A service whose single pool serves every tenant (the EHR sandbox) cannot connect as a
# per-tenant role. It connects as its own LOGIN role (no superuser, no BYPASSRLS) and sets
# ``app.tenant`` on every checkout; the policy below then limits each statement to that
# tenant's rows, so a query that forgets its tenant filter sees (and can write) nothing else.
# Work that legitimately spans tenants runs on a separate platform pool (superuser or
# BYPASSRLS), never on the service role's pool.

SETTING_POLICY_NAME = "vigil_tenant_setting"


def service_role_sql(role: str) -> str:
    """DDL creating the LOGIN role ``role`` if missing (no superuser, no BYPASSRLS), with
    USAGE on the public schema. Its password is set at start-up (``set_service_password``).
    Part of other modules' migration checksums: never edit the text it returns."""
    role = _check_table(role)
    return f"""
DO $vigil$
BEGIN
    PERFORM pg_advisory_xact_lock({_lock_id('vigil_roles')});
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN
        CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION;
    END IF;
END
$vigil$;
GRANT USAGE ON SCHEMA public TO {role};
"""


def setting_rls_sql(table: str, grantee: str, *, column: str = "tenant",
                    privileges: tuple[str, ...] = _DML) -> str:
    """DDL that enables and forces RLS on ``table`` with the policy
    ``<column> = current_setting('app.tenant', true)`` and grants ``privileges`` to ``grantee``.
    An unset ``app.tenant`` matches no row. Idempotent; usable as an ``ensure_schema`` step.
    Part of other modules' migration checksums: never edit the text it returns."""
    table, grantee, column = _check_table(table), _check_table(grantee), _check_table(column)
    bad = [p for p in privileges if p not in _DML]
    if bad or not privileges:
        raise ValueError(f"privileges must be a non-empty subset of {_DML}, got {privileges}")
    expr = f"{column} = current_setting('app.tenant', true)"
    return f"""
ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
ALTER TABLE {table} FORCE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS {SETTING_POLICY_NAME} ON {table};
CREATE POLICY {SETTING_POLICY_NAME} ON {table} USING ({expr}) WITH CHECK ({expr});
REVOKE ALL ON {table} FROM PUBLIC;
GRANT {', '.join(privileges)} ON {table} TO {grantee};
"""


def service_password(secrets: SecretSettings, role: str) -> str:
    """The password of a service role, derived from the master secret."""
    import base64

    raw = secrets.derive(f"vigil/postgres-service-password/v1/{_check_table(role)}")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


async def set_service_password(admin: asyncpg.Connection, role: str, secrets: SecretSettings) -> str:
    """(Re)set the service role's password on an admin connection, serialized with other
    start-ups (concurrent ALTER ROLE on one role fails). Returns the password."""
    password = service_password(secrets, role)
    async with admin.transaction():
        await admin.execute("SELECT pg_advisory_xact_lock($1)", _lock_id("vigil_roles"))
        await admin.execute(f"ALTER ROLE {quote_ident(_check_table(role))} PASSWORD {quote_literal(password)}")
    return password


async def set_tenant(conn: asyncpg.Connection, tenant: str) -> None:
    """Session-level ``app.tenant`` for a connection just checked out of a service-role pool.
    Every checkout sets it again, so a value never outlives the unit of work that set it."""
    await conn.execute("SELECT set_config('app.tenant', $1, false)", tenant)
