"""Tenant and agent modes, the pilot practitioner list and kill switches.

A tenant runs in ``silent`` (decide and record, write nothing), ``pilot`` (write only for the
listed practitioners) or ``active``. The default is the tenant registry's ``mode``; an operator
override for the whole tenant, and per agent (``triage``, ``scheduling``, ``writeback``...), is
stored in PostgreSQL. The effective mode of an agent is its own override, else the tenant
override, else the registry. A kill switch exists per tenant (agent ``*``) and per agent; an
agent is killed when either is on.

Table ``vigil_modes`` (tenant RLS), one row per (tenant, agent); agent ``*`` is the tenant-wide
row. The control service owns it: it alone migrates and writes it (``services.control.modes``,
behind its SetMode / SetPilot / Kill RPCs; `vigil mode` and `vigil kill` call those), and appends
every change to the tenant's audit chain in the same transaction. This module only reads.

Reads go through ``ModeStore``'s cache (a ``fresh`` read bypasses it; every read is one statement
in one round trip, ``TenantPools.read``): one query per tenant at most every ``CACHE_TTL_S``
seconds, so a change made through the control service takes effect in every process within
about a second without a restart. Before the control service has ever migrated the table there
is no override to read: every tenant runs in its registry mode, and nothing can be killed yet.

Promotions (a move to a mode that writes more: silent -> pilot -> active) are checked by the
``promotion_checks`` the control service's writer is built with; the type of such a check is
declared here so the command layer (the monitor's gates) can build one without importing control.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable

import asyncpg

from services.core.errors import ValidationError
from services.core.logging import get_logger
from services.core.tenancy import MODES, check_tenant_id
from services.core.tenantdir import TenantDirectory
from services.core.tenantdb import TenantPools

log = get_logger("vigil.modes")
TENANT_WIDE = "*"
#: Seconds a process reuses a tenant's mode rows (a kill switch takes effect within this).
CACHE_TTL_S = 1.0
#: One round trip on the tenant's read connection (``TenantPools.read``): a fresh read (the kill
#: switch before every write) costs one indexed statement, no checkout or transaction.
ROWS_QUERY = ("SELECT agent, mode, killed, pilot_practitioners, updated_at, updated_by FROM vigil_modes "
              "WHERE tenant = $1")
MODE_RANK = {m: i for i, m in enumerate(MODES)}  # silent 0 < pilot 1 < active 2

#: ``await check(tenant, agent, old_mode, new_mode)`` -> None or a refusal reason.
PromotionCheck = Callable[[str, str | None, str, str], Awaitable[str | None]]


@dataclass(frozen=True)
class AgentState:
    tenant: str
    agent: str
    mode: str                       # effective mode
    source: str                     # "agent" | "tenant" | "registry"
    killed: bool
    pilot_practitioners: tuple[str, ...]

    def writes_for(self, owner: str | None) -> bool:
        """May this agent write a result owned by ``owner`` (a Practitioner reference)?"""
        if self.killed or self.mode == "silent":
            return False
        if self.mode == "pilot":
            return owner is not None and owner in self.pilot_practitioners
        return True

    def as_dict(self) -> dict:
        return {"tenant": self.tenant, "agent": self.agent, "mode": self.mode, "source": self.source,
                "killed": self.killed, "pilot_practitioners": list(self.pilot_practitioners)}


def check_agent(agent: str | None) -> str:
    if agent is None or agent == TENANT_WIDE:
        return TENANT_WIDE
    if not agent.replace("-", "").replace("_", "").isalnum() or len(agent) > 40:
        raise ValidationError(f"invalid agent name {agent!r}", code="bad_agent")
    return agent


class ModeStore:
    """Read the modes and kill switches of tenants (cached); ``registry`` supplies the default mode.
    The control service's writer (``services.control.modes.ModeAdmin``) extends it."""

    def __init__(self, pools: TenantPools, registry_path=None, *, ttl_s: float = CACHE_TTL_S):
        self.pools, self.registry_path, self.ttl_s = pools, registry_path, ttl_s
        # The registry file is parsed again only when it changes (not on every mode read).
        self._directory = TenantDirectory(Path(registry_path)) if registry_path is not None else None
        self._cache: dict[str, tuple[float, dict[str, dict]]] = {}
        self._warned_missing = False

    def forget(self, tenant: str) -> None:
        """Drop the cached rows of ``tenant`` (after a write in this process)."""
        self._cache.pop(tenant, None)

    def _registry_mode(self, tenant: str) -> str:
        if self._directory is not None:
            registry = self._directory.registry()
            if tenant in registry:
                return registry.get(tenant).mode
        return "silent"  # unknown tenant: the safe mode

    async def _rows(self, tenant: str, fresh: bool = False) -> dict[str, dict]:
        cached = self._cache.get(tenant)
        now = time.monotonic()
        if cached and not fresh and now - cached[0] < self.ttl_s:
            return cached[1]
        try:
            rows = {r["agent"]: dict(r) for r in await self.pools.read(tenant, ROWS_QUERY, tenant)}
        except asyncpg.UndefinedTableError:  # the control service never ran here: no override exists yet
            if not self._warned_missing:
                log.warning("modes.table_missing", detail="no overrides; registry modes apply")
                self._warned_missing = True
            rows = {}
        self._cache[tenant] = (now, rows)
        return rows

    async def state(self, tenant: str, agent: str | None = None, *, fresh: bool = False) -> AgentState:
        tenant, agent = check_tenant_id(tenant), check_agent(agent)
        rows = await self._rows(tenant, fresh)
        wide, own = rows.get(TENANT_WIDE) or {}, (rows.get(agent) or {}) if agent != TENANT_WIDE else {}
        if own.get("mode"):
            mode, source = own["mode"], "agent"
        elif wide.get("mode"):
            mode, source = wide["mode"], "tenant"
        else:
            mode, source = self._registry_mode(tenant), "registry"
        pilot = own.get("pilot_practitioners") or wide.get("pilot_practitioners") or "[]"
        return AgentState(tenant, agent, mode, source, bool(wide.get("killed") or own.get("killed")),
                          tuple(json.loads(pilot) if isinstance(pilot, str) else pilot))

    async def get_mode(self, tenant: str, agent: str | None = None) -> str:
        return (await self.state(tenant, agent)).mode

    async def is_killed(self, tenant: str, agent: str | None = None) -> bool:
        return (await self.state(tenant, agent)).killed
