"""The control service's writes of modes, pilot lists and kill switches (table ``vigil_modes``).

The control service owns ``vigil_modes``: it alone migrates and writes it, here, behind its
SetMode / SetPilot / Kill RPCs (`vigil mode set|pilot`, `vigil kill`, the demo and the console
all call those). Every other process reads through ``services.core.modes.ModeStore`` and its
one-second cache, so a change made here is obeyed everywhere within about a second.

Promotions (silent -> pilot -> active) are checked by the ``promotion_checks`` the writer is
built with (the command layer passes the monitor's gates, ``services.commands.control_service``).
A check returns ``None`` to allow or a short reason to refuse; ``force=True`` with a reason
overrides, audited. A writer built without ``promotion_checks`` refuses every promotion (a control
process that was not wired to the gates cannot promote silent -> active unchecked); ``()`` says,
in so many words, that no gate applies. Demotions and kill switches are never checked.

The migration keeps the module name ``core.modes`` under which the table was first created, so
databases migrated before the table moved here keep their applied step.
"""
from __future__ import annotations

import json
from typing import Sequence

from services.core import audit
from services.core.errors import ConflictError, ValidationError
from services.core.modes import MODE_RANK, TENANT_WIDE, AgentState, ModeStore, PromotionCheck, check_agent
from services.core.tenancy import MODES, check_tenant_id
from services.core.tenantdb import TenantPools, tenant_rls_sql

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
#: The refusal of a writer that was given no promotion checks at all.
NO_GATE = "no promotion gate is configured in the control service (start it as services.commands.control_service)"
MAX_PILOT = 500


class PromotionRefused(ConflictError):
    code = "promotion_refused"


def check_pilot(practitioners: Sequence[str]) -> list[str]:
    if len(practitioners) > MAX_PILOT:
        raise ValidationError(f"at most {MAX_PILOT} pilot practitioners", code="too_many_practitioners")
    for ref in practitioners:
        if not ref.startswith(("Practitioner/", "PractitionerRole/")) or len(ref) > 200:
            raise ValidationError(f"pilot entry {ref[:60]!r} is not a Practitioner reference", code="bad_reference")
    return sorted(set(practitioners))


class ModeAdmin(ModeStore):
    """Reads like ``ModeStore`` (always fresh after a write) and writes, audited."""

    def __init__(self, pools: TenantPools, registry_path=None, *, ttl_s: float = 0.0,
                 promotion_checks: Sequence[tuple[str, PromotionCheck]] | None = None):
        super().__init__(pools, registry_path, ttl_s=ttl_s)
        self.promotion_checks = None if promotion_checks is None else tuple(promotion_checks)

    async def set_mode(self, tenant: str, mode: str, *, agent: str | None = None, actor: str,
                       reason: str = "", force: bool = False, pilot_practitioners: list[str] | None = None
                       ) -> AgentState:
        """Set the tenant's (or one agent's) mode; promotions run the writer's ``promotion_checks``."""
        tenant, agent = check_tenant_id(tenant), check_agent(agent)
        if mode not in MODES:
            raise ValidationError(f"mode {mode!r} is not one of {', '.join(MODES)}", code="bad_mode")
        if force and not reason:
            raise ValidationError("a forced promotion needs a reason", code="force_without_reason")
        pilot_list = check_pilot(pilot_practitioners) if pilot_practitioners is not None else None
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
        pilot = json.dumps(pilot_list) if pilot_list is not None else None
        async with self.pools.tx(tenant) as conn:
            await conn.execute(
                "INSERT INTO vigil_modes (tenant, agent, mode, pilot_practitioners, updated_by) "
                "VALUES ($1, $2, $3, $4::jsonb, $5) ON CONFLICT (tenant, agent) DO UPDATE SET mode = EXCLUDED.mode, "
                "pilot_practitioners = COALESCE(EXCLUDED.pilot_practitioners, vigil_modes.pilot_practitioners), "
                "updated_at = now(), updated_by = EXCLUDED.updated_by", tenant, agent, mode, pilot, actor)
            await audit.append(conn, tenant, actor, "mode.set", [f"vigil:mode/{agent}"], {
                "agent": agent, "from": old, "to": mode, "reason": reason[:200], "forced": bool(refusals and force),
                "refusals": refusals, "pilot_practitioners": pilot_list})
        return await self.state(tenant, agent, fresh=True)

    async def set_pilot(self, tenant: str, practitioners: list[str], *, agent: str | None = None,
                        actor: str, reason: str = "") -> AgentState:
        """Replace the pilot list of the tenant (or one agent); the mode is unchanged."""
        tenant, agent = check_tenant_id(tenant), check_agent(agent)
        pilot = json.dumps(check_pilot(practitioners))
        async with self.pools.tx(tenant) as conn:
            await conn.execute(
                "INSERT INTO vigil_modes (tenant, agent, pilot_practitioners, updated_by) VALUES ($1, $2, $3::jsonb, $4) "
                "ON CONFLICT (tenant, agent) DO UPDATE SET pilot_practitioners = EXCLUDED.pilot_practitioners, "
                "updated_at = now(), updated_by = EXCLUDED.updated_by", tenant, agent, pilot, actor)
            await audit.append(conn, tenant, actor, "mode.pilot", [f"vigil:mode/{agent}"],
                               {"agent": agent, "pilot_practitioners": json.loads(pilot), "reason": reason[:200]})
        return await self.state(tenant, agent, fresh=True)

    async def kill(self, tenant: str, agent: str | None = None, on: bool = True, *, actor: str,
                   reason: str = "") -> AgentState:
        """Turn the kill switch of the tenant (``agent=None``) or of one agent on or off."""
        tenant, agent = check_tenant_id(tenant), check_agent(agent)
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
