"""Revoked gRPC credentials: a deny list in PostgreSQL, checked on every call.

``vigil token revoke <jti>`` adds a token's id to ``vigil_revoked_tokens`` (and records it in
the platform audit chain). Every gRPC server (tools, inference, control) holds a ``DenyList``:
before admitting a call it checks the credential's ``jti`` against its copy of the table. A
revocation is announced with ``NOTIFY vigil_token_revoked`` and every server listening adds
the id at once; as a fallback (a lost listener connection) the copy is also re-read when older
than ``VIGIL_TOKEN_REVOCATION_CACHE_S`` (default 1 s), one small query per second per server.
When the table cannot be read the server refuses calls (UNAVAILABLE) rather than admit a
credential it cannot check.

A row is kept for ``tokens.MAX_TTL_SECONDS`` plus the tolerated clock skew: no token outlives
that, so older rows are purged on the next revocation.
"""
from __future__ import annotations

import asyncio
import os
import time
from typing import Mapping

import asyncpg

from services.core import audit
from services.core.config import ConfigError, Settings
from services.core.db import create_pool, ensure_schema
from services.core.errors import RetryableError, UnauthenticatedError
from services.core.logging import get_logger
from services.core.tokens import CLOCK_SKEW_SECONDS, MAX_JTI_CHARS, MAX_TTL_SECONDS

log = get_logger("vigil.revocation")
DEFAULT_CACHE_S = 1.0
CHANNEL = "vigil_token_revoked"
KEEP_SECONDS = MAX_TTL_SECONDS + CLOCK_SKEW_SECONDS

SCHEMA_MODULE = "token_revocation"
SCHEMA_STEPS = [
    """
CREATE TABLE IF NOT EXISTS vigil_revoked_tokens (
    jti text PRIMARY KEY,
    revoked_at timestamptz NOT NULL DEFAULT now(),
    keep_until timestamptz NOT NULL,
    actor text NOT NULL
);
CREATE INDEX IF NOT EXISTS vigil_revoked_tokens_keep ON vigil_revoked_tokens (keep_until);
""",
]


def cache_seconds(env: Mapping[str, str] | None = None) -> float:
    source = os.environ if env is None else env
    raw = source.get("VIGIL_TOKEN_REVOCATION_CACHE_S") or str(DEFAULT_CACHE_S)
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 60:
        raise ConfigError(f"VIGIL_TOKEN_REVOCATION_CACHE_S={raw!r}: expected seconds between 0 and 60")
    return value


def check_jti(jti: str) -> str:
    jti = (jti or "").strip()
    if not 1 <= len(jti) <= MAX_JTI_CHARS or not jti.isprintable() or " " in jti:
        raise ValueError(f"a token id (jti) is 1-{MAX_JTI_CHARS} printable characters without spaces")
    return jti


async def revoke(conn: asyncpg.Connection, jti: str, actor: str) -> bool:
    """Deny ``jti`` from now on (admin connection); False when it was already revoked."""
    jti = check_jti(jti)
    async with conn.transaction():
        await conn.execute("DELETE FROM vigil_revoked_tokens WHERE keep_until < now()")
        added = await conn.fetchval(
            "INSERT INTO vigil_revoked_tokens (jti, keep_until, actor) "
            "VALUES ($1, now() + make_interval(secs => $2), $3) ON CONFLICT (jti) DO NOTHING RETURNING true",
            jti, float(KEEP_SECONDS), actor)
        if added:
            await audit.append(conn, audit.PLATFORM, actor, "token.revoke", [f"vigil:token/{jti}"], {})
            await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, jti)  # delivered at commit
    return bool(added)


class DenyList:
    """The revoked token ids as one server sees them (a snapshot at most ``cache_s`` old)."""

    def __init__(self, settings: Settings, cache_s: float | None = None):
        self.settings = settings
        self.cache_s = cache_seconds() if cache_s is None else cache_s
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        self._revoked: frozenset[str] = frozenset()
        self._announced_ids: set[str] = set()  # kept across re-reads that may have started before the NOTIFY
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()

    async def start(self) -> "DenyList":
        self._pool = await create_pool(self.settings, min_size=1, max_size=1)
        await ensure_schema(self._pool, SCHEMA_MODULE, SCHEMA_STEPS)
        self._listener = await asyncpg.connect(self.settings.postgres_dsn)
        await self._listener.add_listener(CHANNEL, self._announced)
        await self._refresh()
        return self

    def _announced(self, _conn, _pid, _channel, payload: str) -> None:
        self._announced_ids.add(payload)
        self._revoked = self._revoked | {payload}

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def _refresh(self) -> None:
        assert self._pool is not None, "DenyList.start() first"
        rows = await self._pool.fetch("SELECT jti FROM vigil_revoked_tokens WHERE keep_until > now()")
        self._revoked = frozenset(r["jti"] for r in rows) | self._announced_ids
        self._loaded_at = time.monotonic()

    async def check(self, jti: str) -> None:
        """UnauthenticatedError if ``jti`` is revoked; RetryableError if the list cannot be read."""
        if time.monotonic() - self._loaded_at >= self.cache_s:
            async with self._lock:
                if time.monotonic() - self._loaded_at >= self.cache_s:
                    try:
                        await self._refresh()
                    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                        log.error("revocation.refresh_failed", error_type=type(exc).__name__)
                        raise RetryableError("the token deny list cannot be read", code="revocation_unavailable",
                                             retry_after=1.0) from None
        if jti in self._revoked:
            raise UnauthenticatedError("credential revoked", code="token_revoked")
