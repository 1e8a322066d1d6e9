"""Promotion gates of the crawl-walk-run lifecycle: silent -> pilot -> active, never skipping a step.

``evaluate(...)`` checks whether a tenant may move to the next mode (or ``to``) and records the
decision (``monitor_gate_decisions`` plus a ``gate.evaluate`` record in the tenant's audit chain,
in one transaction):

| to | check | passes when |
|---|---|---|
| pilot, active | ``gold-f1``, ``gold-precision`` | `vigil eval` on the gold set with the tenant's live engine passes its gates (lower 95% bounds) |
| active | ``override-rate`` | on the Tasks written in the period (``--since/--until``, default the last ``gate_window_days``): at least ``gate_min_actions`` clinician actions and overridden / (accepted + overridden) <= ``gate_max_override_rate`` |
| active | ``time-to-alert-p95`` | at least ``gate_min_tasks`` of those Tasks with a note time and p95 (note time -> Task created) <= ``gate_max_tta_p95_s`` |

The live numbers are ``figures.compute`` over the period: the same figures `vigil report` shows.

``promotion_check`` is given to the ModeStores that may promote (``promotion_checks()``): `vigil mode set`
is allowed a promotion old -> new only when the newest gate decision for ``new`` passed, was
evaluated from ``old`` and is younger than ``gate_valid_s``; otherwise it answers the reason
(and `--force --reason` overrides it, audited by the mode store).
"""
from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import AsyncIterator, Mapping

from services.core import audit, modes
from services.core.config import Settings
from services.core.db import create_pool
from services.core.db import ensure_schema as migrate
from services.core.errors import ValidationError
from services.core.secrets import SecretSettings
from services.core.tenancy import MODES, check_tenant_id
from services.core.tenantdb import TenantPools
from services.monitor import figures, schema, units
from services.monitor.config import MonitorSettings
from services.monitor.evalrun import run_eval, tenant_engine
from services.monitor.stats import percentile
from services.monitor.store import MonitorStore, utcnow

CHECK_NAME = "monitor-gate"


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    value: float | None
    threshold: float
    detail: str


@dataclass(frozen=True)
class GateResult:
    tenant: str
    from_mode: str
    to_mode: str
    passed: bool
    checks: tuple[Check, ...]
    decision_id: str = ""

    def as_dict(self) -> dict:
        return {"tenant": self.tenant, "from": self.from_mode, "to": self.to_mode, "passed": self.passed,
                "decision_id": self.decision_id, "checks": [asdict(c) for c in self.checks]}


def next_mode(mode: str) -> str | None:
    i = MODES.index(mode)
    return MODES[i + 1] if i + 1 < len(MODES) else None


def target(current: str, to: str | None) -> str:
    if to is None:
        nxt = next_mode(current)
        if nxt is None:
            raise ValidationError(f"the tenant is already {current}: there is no further gate", code="no_gate")
        return nxt
    if to not in MODES[1:]:
        raise ValidationError(f"--to must be pilot or active, got {to!r}", code="bad_mode")
    if MODES.index(to) <= MODES.index(current):
        raise ValidationError(f"{current} -> {to} is not a promotion (demotions need no gate)", code="not_promotion")
    return to


def score_checks(report: dict, what: str) -> list[Check]:
    """The gold gate's checks from a scoring report (``vigil eval --json``'s shape: ``n_notes``,
    ``micro``, ``gates``); ``what`` names what was scored. Also the gate of `vigil crawl report`."""
    g = report["gates"]
    return [Check("gold-f1", bool(g["f1_passed"]), g["f1_lower"], g["min_f1"],
                  f"{what} on {report['n_notes']} gold notes: micro F1 {report['micro']['f1']:.3f}, "
                  f"95% lower bound {g['f1_lower']:.3f}"),
            Check("gold-precision", bool(g["precision_passed"]), g["precision_lower"], g["min_precision"],
                  f"micro precision {report['micro']['precision']:.3f}, 95% lower bound {g['precision_lower']:.3f}")]


async def gold_checks(ms: MonitorSettings, settings: Settings, tenant: str, env=None) -> list[Check]:
    engine = tenant_engine(settings.tenants_file, tenant)
    report = await run_eval(ms.gold, engine, tenant, resamples=ms.eval_resamples, env=env)
    return score_checks(report, f"{engine} {report['engine']['version']}")


def live_period(ms: MonitorSettings, since: datetime | None, until: datetime | None) -> tuple[datetime, datetime]:
    """The gate's live-data period: ``[since, until)``, by default the last ``gate_window_days``."""
    until = until or utcnow()
    return since or until - timedelta(days=ms.gate_window_days), until


async def live_checks(ms: MonitorSettings, store: MonitorStore, tenant: str, since: datetime | None = None,
                      until: datetime | None = None) -> list[Check]:
    """Override rate and time-to-alert p95 of the Tasks written in the period (``figures``: the same
    numbers `vigil report` shows for that period)."""
    f = await figures.compute(store, tenant, *live_period(ms, since, until))
    overridden, acted = f.count("overridden"), f.count("accepted") + f.count("overridden")
    value = f.value("override_rate")
    period = units.period(f.since, f.until)
    override = Check("override-rate", acted >= ms.gate_min_actions and value is not None
                     and value <= ms.gate_max_override_rate, value, ms.gate_max_override_rate,
                     f"{overridden} overridden of {acted} clinician actions on the Tasks written {period} "
                     f"(at least {ms.gate_min_actions} needed)")
    tta = f.tta_seconds
    p95 = percentile(tta, 95)
    timely = Check("time-to-alert-p95", len(tta) >= ms.gate_min_tasks and p95 is not None
                   and p95 <= ms.gate_max_tta_p95_s, p95, ms.gate_max_tta_p95_s,
                   f"p95 over {len(tta)} Tasks written {period} (at least {ms.gate_min_tasks} needed)"
                   + (f": {units.duration(p95)} (gate {units.duration(ms.gate_max_tta_p95_s)})"
                      if p95 is not None else ""))
    return [override, timely]


async def evaluate(ms: MonitorSettings, settings: Settings, pools: TenantPools, mode_store: modes.ModeStore,
                   tenant: str, to: str | None = None, *, actor: str, env: Mapping[str, str] | None = None,
                   since: datetime | None = None, until: datetime | None = None) -> GateResult:
    tenant = check_tenant_id(tenant)
    current = (await mode_store.state(tenant, fresh=True)).mode
    to_mode = target(current, to)
    checks: list[Check] = []
    if MODES.index(to_mode) - MODES.index(current) > 1:
        checks.append(Check("one-step", False, None, 1, f"{current} -> {to_mode} skips a step; promote to "
                                                        f"{next_mode(current)} first"))
    checks += await gold_checks(ms, settings, tenant, env)
    store = MonitorStore(pools)
    if to_mode == "active":
        checks += await live_checks(ms, store, tenant, since, until)
    passed = all(c.passed for c in checks)
    async with pools.tx(tenant) as conn:
        decision_id = await store.add_gate_decision(conn, tenant, current, to_mode, passed,
                                                    [asdict(c) for c in checks], actor)
        await audit.append(conn, tenant, actor, "gate.evaluate", [f"vigil:gate/{decision_id}"], {
            "from": current, "to": to_mode, "passed": passed,
            "failed": [c.name for c in checks if not c.passed]})
    return GateResult(tenant, current, to_mode, passed, tuple(checks), decision_id)


@contextlib.asynccontextmanager
async def opened(settings: Settings, env: Mapping[str, str] | None = None) -> AsyncIterator[TenantPools]:
    """Migrate (platform pool) and yield tenant pools for a command or a promotion check."""
    admin = await create_pool(settings, min_size=1, max_size=1)
    try:
        await schema.ensure_schema(admin)
        await migrate(admin, audit.SCHEMA_MODULE, audit.SCHEMA_STEPS)  # gate decisions are audited
    finally:
        await admin.close()
    pools = TenantPools(settings, SecretSettings.from_env(env))
    try:
        yield pools
    finally:
        await pools.close()


async def promotion_check(tenant: str, agent: str | None, old: str, new: str) -> str | None:
    """A ModeStore promotion check: None when a passed, fresh gate decision old -> new exists."""
    settings, ms = Settings.from_env(), MonitorSettings.from_env()
    async with opened(settings) as pools:
        latest = await MonitorStore(pools).latest_gate(tenant, new)
    hint = f"run `vigil gate --tenant {tenant} --to {new}`"
    if latest is None:
        return f"no gate decision for {old} -> {new}; {hint}"
    if not latest["passed"]:
        failed = ", ".join(c["name"] for c in latest["checks"] if not c["passed"])
        return f"the latest gate for {new} failed ({failed}) at {latest['time']:%Y-%m-%d %H:%M} UTC"
    if latest["from_mode"] != old:
        return f"the latest gate for {new} was evaluated from {latest['from_mode']}, not {old}; {hint}"
    age = (utcnow() - latest["time"]).total_seconds()
    if age > ms.gate_valid_s:
        return f"the passed gate for {new} is {age / 86400:.1f} days old (valid {ms.gate_valid_s / 86400:.0f}); {hint}"
    return None


def promotion_checks() -> list[tuple[str, modes.PromotionCheck]]:
    """The checks a ModeStore that may promote is built with (`vigil mode set`, the control service)."""
    return [(CHECK_NAME, promotion_check)]
