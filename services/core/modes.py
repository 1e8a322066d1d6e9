"""Tenant and agent modes, the pilot practitioner list and kill switches.

A tenant runs in ``silent`` (decide and record, write nothing), ``pilot`` (write only for the
listed practitioners) or ``active``. The default is the tenant registry's ``mode``; an operator
override for the whole tenant, and per agent (``triage``, ``scheduling``, ``writeback``...), is
stored in PostgreSQL. The effective mode of an agent is its own override, else the tenant
override, else the registry. A kill switch exists per tenant (agent ``*``) and per agent; an
agent is killed when either is on.

Table ``vigil_modes`` (tenant RLS, read and written through ``TenantPools``), one row per
(tenant, agent); agent ``*`` is the tenant-wide row. Every change is appended to the tenant's
audit chain in the same transaction.

Reads go through ``ModeStore``'s cache: one query per tenant at most every ``CACHE_TTL_S``
seconds, so a change made by any process (CLI, control service) takes effect everywhere
within about a second without a restart.

Promotions (a move to a mode that writes more: silent -> pilot -> active) are checked by the
``promotion_checks`` a ModeStore is built with (the command layer passes the monitor's gates).
A check returns ``None`` to allow or a short reason to refuse; ``force=True`` with a reason
overrides, audited. A store built without ``promotion_checks`` refuses every promotion (a process
that was not wired to the gates cannot promote silent -> active unchecked); ``()`` says, in so
many words, that no gate applies. Demotions and kill switches are never checked.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Awaitable, Callable, Sequence

from services.core import audit
from services.core.errors import ConflictError, ValidationError
from services.core.tenancy import MODES, Registry, check_tenant_id
from services.core.tenantdb import TenantPools, tenant_rls_sql

TENANT_WIDE = "*"
#: Seconds a process reuses a tenant's mode rows (a kill switch takes effect within this).
CACHE_TTL_S = 1.0
MODE_RANK = {m: i for i, m in enumerate(MODES)}  # silent 0 < pilot 1 < active 2

SCHEMA_MODULE = "core.modes"
SCHEMA_STEPS = [
    """
CREATE TABLE IF NOT EXISTS vigil_modes (
    tenant text NOT NULL,
    agent text NOT NULL,
    mode text CHECK (mode IS NULL OR mode IN ('silent', 'pilot', 'active')),
    killed boolean NOT NULL DEFAULT false,
    pilot_practitioners jsonb,
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text NOT NULL,
    PRIMARY KEY (tenant, agent)
);
""",
    tenant_rls_sql("vigil_modes", ("SELECT", "INSERT", "UPDATE")),
]


class PromotionRefused(ConflictError):
    code = "promotion_refused"


#: ``await check(tenant, agent, old_mode, new_mode)`` -> None or a refusal reason.
PromotionCheck = Callable[[str, str | None, str, str], Awaitable[str | None]]
#: The refusal of a store that was given no promotion checks at all.
NO_GATE = "no promotion gate is configured in this process (promote with `vigil mode set` or the control service)"


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


def _agent(agent: str | None) -> str:
    if agent is None or agent == TENANT_WIDE:
        return TENANT_WIDE
    if not agent.replace("-", "").replace("_", "").isalnum() or len(agent) > 40:
        raise ValidationError(f"invalid agent name {agent!r}", code="bad_agent")
    return agent


class ModeStore:
    """Get and set modes and kill switches of tenants; ``registry`` supplies the default mode."""

    def __init__(self, pools: TenantPools, registry_path=None, *, ttl_s: float = CACHE_TTL_S,
                 promotion_checks: Sequence[tuple[str, PromotionCheck]] | None = None):
        self.pools, self.registry_path, self.ttl_s = pools, registry_path, ttl_s
        self.promotion_checks = None if promotion_checks is None else tuple(promotion_checks)
        self._cache: dict[str, tuple[float, dict[str, dict]]] = {}

    def _registry_mode(self, tenant: str) -> str:
        if self.registry_path is not None:
            registry = Registry.load(self.registry_path)
            if tenant in registry:
                return registry.get(tenant).mode
        return "silent"  # unknown tenant: the safe mode

    async def _rows(self, tenant: str, fresh: bool = False) -> dict[str, dict]:
        cached = self._cache.get(tenant)
        now = time.monotonic()
        if cached and not fresh and now - cached[0] < self.ttl_s:
            return cached[1]
        async with self.pools.tx(tenant, readonly=True) as conn:
            rows = {r["agent"]: dict(r) for r in await conn.fetch(
                "SELECT agent, mode, killed, pilot_practitioners, updated_at, updated_by FROM vigil_modes "
                "WHERE tenant = $1", tenant)}
        self._cache[tenant] = (now, rows)
        return rows

    async def state(self, tenant: str, agent: str | None = None, *, fresh: bool = False) -> AgentState:
        tenant, agent = check_tenant_id(tenant), _agent(agent)
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

    async def set_mode(self, tenant: str, mode: str, *, agent: str | None = None, actor: str,
                       reason: str = "", force: bool = False, pilot_practitioners: list[str] | None = None
                       ) -> AgentState:
        """Set the tenant's (or one agent's) mode; promotions run the store's ``promotion_checks``."""
        tenant, agent = check_tenant_id(tenant), _agent(agent)
        if mode not in MODES:
            raise ValidationError(f"mode {mode!r} is not one of {', '.join(MODES)}", code="bad_mode")
        if force and not reason:
            raise ValidationError("a forced promotion needs a reason", code="force_without_reason")
        old = (await self.state(tenant, agent, fresh=True)).mode
        refusals: list[str] = []
        if MODE_RANK[mode] > MODE_RANK[old]:
            if self.promotion_checks is None:
                refusals.append(NO_GATE)
            for name, check in self.promotion_checks or ():
                why = await check(tenant, None if agent == TENANT_WIDE else agent, old, mode)
                if why:
                    refusals.append(f"{name}: {why}")
        if refusals and not force:
            raise PromotionRefused(f"promotion {old} -> {mode} refused: " + "; ".join(refusals))
        pilot = json.dumps(sorted(set(pilot_practitioners))) if pilot_practitioners is not None else None
        async with self.pools.tx(tenant) as conn:
            await conn.execute(
                "INSERT INTO vigil_modes (tenant, agent, mode, pilot_practitioners, updated_by) "
                "VALUES ($1, $2, $3, $4::jsonb, $5) ON CONFLICT (tenant, agent) DO UPDATE SET mode = EXCLUDED.mode, "
                "pilot_practitioners = COALESCE(EXCLUDED.pilot_practitioners, vigil_modes.pilot_practitioners), "
                "updated_at = now(), updated_by = EXCLUDED.updated_by", tenant, agent, mode, pilot, actor)
            await audit.append(conn, tenant, actor, "mode.set", [f"vigil:mode/{agent}"], {
                "agent": agent, "from": old, "to": mode, "reason": reason[:200], "forced": bool(refusals and force),
                "refusals": refusals, "pilot_practitioners": json.loads(pilot) if pilot else None})
        return await self.state(tenant, agent, fresh=True)

    async def set_pilot(self, tenant: str, practitioners: list[str], *, agent: str | None = None,
                        actor: str) -> AgentState:
        tenant, agent = check_tenant_id(tenant), _agent(agent)
        for ref in practitioners:
            if not ref.startswith(("Practitioner/", "PractitionerRole/")):
                raise ValidationError(f"pilot entry {ref!r} is not a Practitioner reference", code="bad_reference")
        pilot = json.dumps(sorted(set(practitioners)))
        async with self.pools.tx(tenant) as conn:
            await conn.execute(
                "INSERT INTO vigil_modes (tenant, agent, pilot_practitioners, updated_by) VALUES ($1, $2, $3::jsonb, $4) "
                "ON CONFLICT (tenant, agent) DO UPDATE SET pilot_practitioners = EXCLUDED.pilot_practitioners, "
                "updated_at = now(), updated_by = EXCLUDED.updated_by", tenant, agent, pilot, actor)
            await audit.append(conn, tenant, actor, "mode.pilot", [f"vigil:mode/{agent}"],
                               {"agent": agent, "pilot_practitioners": json.loads(pilot)})
        return await self.state(tenant, agent, fresh=True)

    async def kill(self, tenant: str, agent: str | None = None, on: bool = True, *, actor: str,
                   reason: str = "") -> AgentState:
        """Turn the kill switch of the tenant (``agent=None``) or of one agent on or off."""
        tenant, agent = check_tenant_id(tenant), _agent(agent)
        async with self.pools.tx(tenant) as conn:
            await conn.execute(
                "INSERT INTO vigil_modes (tenant, agent, killed, updated_by) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT (tenant, agent) DO UPDATE SET killed = EXCLUDED.killed, updated_at = now(), "
                "updated_by = EXCLUDED.updated_by", tenant, agent, on, actor)
            await audit.append(conn, tenant, actor, "kill.on" if on else "kill.off", [f"vigil:mode/{agent}"],
                               {"agent": agent, "reason": reason[:200]})
        return await self.state(tenant, agent, fresh=True)


async def ensure_schema(pool) -> None:
    """Migrate (admin pool): the modes table and the audit log it appends to."""
    from services.core.db import ensure_schema as migrate

    await migrate(pool, audit.SCHEMA_MODULE, audit.SCHEMA_STEPS)
    await migrate(pool, SCHEMA_MODULE, SCHEMA_STEPS)
