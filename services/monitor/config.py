"""Monitor settings: read once from the environment into a frozen object that fails fast.

Every threshold of the drift alerts and the promotion gates is here, with its variable name:

| variable | default | meaning |
|---|---|---|
| ``VIGIL_MONITOR_APP_ID`` | ``vigil-platform.monitor`` | faust app id = consumer group |
| ``VIGIL_MONITOR_TENANTS`` | (registry) | comma-separated tenant ids; default every registry tenant, followed while it runs |
| ``VIGIL_MONITOR_WINDOW_S`` | 3600 | tumbling window of the counters (seconds) |
| ``VIGIL_MONITOR_OVERRIDE_WINDOW_DAYS`` | 30 | trailing window of the override-rate gauge and alert (ending at the tenant's newest action) |
| ``VIGIL_MONITOR_IGNORED_AFTER_S`` | 259200 | a Task with no clinician action after this long is *ignored* (72 h) |
| ``VIGIL_MONITOR_PSI_MAX`` | 0.2 | PSI above this raises a drift alert |
| ``VIGIL_MONITOR_F1_DROP_MAX`` | 0.05 | gold-set micro F1 below baseline by more than this raises an alert |
| ``VIGIL_MONITOR_OVERRIDE_RATE_MAX`` | 0.10 | override rate over the trailing window above this raises an alert |
| ``VIGIL_MONITOR_OVERRIDE_MIN_ACTIONS`` | 10 | fewer clinician actions in the window: no override alert |
| ``VIGIL_MONITOR_BASELINE_DAYS`` / ``..._CURRENT_DAYS`` | 28 / 7 | PSI compares the current period with the baseline period before it |
| ``VIGIL_MONITOR_DRIFT_MIN_COUNT`` | 50 | fewer observations in either period: PSI is not computed |
| ``VIGIL_MONITOR_DRIFT_INTERVAL_S`` | 3600 | how often the worker checks PSI |
| ``VIGIL_MONITOR_GOLD_INTERVAL_S`` | 86400 | how often the worker re-scores the gold set (0 = never) |
| ``VIGIL_MONITOR_GOLD`` | ``tests/data/gold_dev.jsonl`` | the gold set (JSON Lines, the taxonomy's format) |
| ``VIGIL_MONITOR_EVAL_RESAMPLES`` | 1000 | bootstrap resamples of the gold re-score and the gates |
| ``VIGIL_MONITOR_FLUSH_S`` | 1.0 | how often Tasks past the ignore threshold are marked ignored |
| ``VIGIL_MONITOR_REGISTRY_POLL_S`` | 5.0 | how often the registry file is checked for added or removed tenants |
| ``VIGIL_MONITOR_RESUBSCRIBE_S`` | 3.0 | how long faust waits after a subscription change before re-subscribing |
| ``VIGIL_GATE_MAX_OVERRIDE_RATE`` | 0.10 | pilot -> active: override rate over the gate window at most this |
| ``VIGIL_GATE_MAX_TTA_P95_S`` | 86400 | pilot -> active: time-to-alert p95 at most this (seconds) |
| ``VIGIL_GATE_MIN_ACTIONS`` / ``VIGIL_GATE_MIN_TASKS`` | 20 / 20 | pilot -> active: at least this much live evidence |
| ``VIGIL_GATE_WINDOW_DAYS`` | 30 | the live-data period of the gate |
| ``VIGIL_GATE_VALID_S`` | 604800 | a passed gate decision allows `vigil mode set` for this long (7 days) |
| ``VIGIL_MONITOR_OVERRIDE_REASONS`` | the inbox's codes | reason codes kept as metric labels; others count as ``other`` |
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from services.core.config import ConfigError
from services.core.tenancy import TenantError, check_tenant_id

REPO = Path(__file__).resolve().parents[2]
DEFAULT_GOLD = REPO / "tests" / "data" / "gold_dev.jsonl"
DEFAULT_REASONS = ("not-present", "other-cause", "wrong-grade", "already-managed", "not-relevant", "other")


def _number(source: Mapping[str, str], name: str, default: float, lo: float, hi: float, *, integer=False):
    raw = source.get(name)
    if raw is None or raw == "":
        return int(default) if integer else float(default)
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a {'whole ' if integer else ''}number") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name}={raw!r}: expected a value between {lo} and {hi}")
    return value


@dataclass(frozen=True)
class MonitorSettings:
    app_id: str = "vigil-platform.monitor"
    tenants: tuple[str, ...] = ()
    window_s: int = 3600
    override_window_days: int = 30
    ignored_after_s: int = 72 * 3600
    psi_max: float = 0.2
    f1_drop_max: float = 0.05
    override_rate_max: float = 0.10
    override_min_actions: int = 10
    baseline_days: int = 28
    current_days: int = 7
    drift_min_count: int = 50
    drift_interval_s: float = 3600.0
    gold_interval_s: float = 86400.0
    gold: Path = DEFAULT_GOLD
    eval_resamples: int = 1000
    flush_s: float = 1.0
    registry_poll_s: float = 5.0
    resubscribe_s: float = 3.0
    gate_max_override_rate: float = 0.10
    gate_max_tta_p95_s: float = 86400.0
    gate_min_actions: int = 20
    gate_min_tasks: int = 20
    gate_window_days: int = 30
    gate_valid_s: int = 7 * 86400
    override_reasons: tuple[str, ...] = DEFAULT_REASONS

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "MonitorSettings":
        s = os.environ if env is None else env
        app_id = s.get("VIGIL_MONITOR_APP_ID") or cls.app_id
        if not app_id.replace(".", "").replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"VIGIL_MONITOR_APP_ID={app_id!r}: use letters, digits, '.', '-' and '_'")
        try:
            tenants = tuple(check_tenant_id(t.strip()) for t in (s.get("VIGIL_MONITOR_TENANTS") or "").split(",")
                            if t.strip())
        except TenantError as exc:
            raise ConfigError(f"VIGIL_MONITOR_TENANTS: {exc}") from None
        gold = Path(s.get("VIGIL_MONITOR_GOLD") or DEFAULT_GOLD).expanduser()
        reasons = tuple(r.strip() for r in (s.get("VIGIL_MONITOR_OVERRIDE_REASONS") or ",".join(DEFAULT_REASONS))
                        .split(",") if r.strip())
        day = 86400
        out = cls(
            app_id=app_id, tenants=tenants,
            window_s=_number(s, "VIGIL_MONITOR_WINDOW_S", 3600, 60, day, integer=True),
            override_window_days=_number(s, "VIGIL_MONITOR_OVERRIDE_WINDOW_DAYS", 30, 1, 365, integer=True),
            ignored_after_s=_number(s, "VIGIL_MONITOR_IGNORED_AFTER_S", 72 * 3600, 60, 90 * day, integer=True),
            psi_max=_number(s, "VIGIL_MONITOR_PSI_MAX", 0.2, 0.0, 10.0),
            f1_drop_max=_number(s, "VIGIL_MONITOR_F1_DROP_MAX", 0.05, 0.0, 1.0),
            override_rate_max=_number(s, "VIGIL_MONITOR_OVERRIDE_RATE_MAX", 0.10, 0.0, 1.0),
            override_min_actions=_number(s, "VIGIL_MONITOR_OVERRIDE_MIN_ACTIONS", 10, 1, 10**6, integer=True),
            baseline_days=_number(s, "VIGIL_MONITOR_BASELINE_DAYS", 28, 1, 365, integer=True),
            current_days=_number(s, "VIGIL_MONITOR_CURRENT_DAYS", 7, 1, 365, integer=True),
            drift_min_count=_number(s, "VIGIL_MONITOR_DRIFT_MIN_COUNT", 50, 1, 10**9, integer=True),
            drift_interval_s=_number(s, "VIGIL_MONITOR_DRIFT_INTERVAL_S", 3600, 0.5, 7 * day),
            gold_interval_s=_number(s, "VIGIL_MONITOR_GOLD_INTERVAL_S", day, 0, 30 * day),
            gold=gold,
            eval_resamples=_number(s, "VIGIL_MONITOR_EVAL_RESAMPLES", 1000, 100, 100_000, integer=True),
            flush_s=_number(s, "VIGIL_MONITOR_FLUSH_S", 1.0, 0.1, 60),
            registry_poll_s=_number(s, "VIGIL_MONITOR_REGISTRY_POLL_S", 5.0, 0.2, 300),
            resubscribe_s=_number(s, "VIGIL_MONITOR_RESUBSCRIBE_S", 3.0, 0.1, 60),
            gate_max_override_rate=_number(s, "VIGIL_GATE_MAX_OVERRIDE_RATE", 0.10, 0.0, 1.0),
            gate_max_tta_p95_s=_number(s, "VIGIL_GATE_MAX_TTA_P95_S", day, 1, 30 * day),
            gate_min_actions=_number(s, "VIGIL_GATE_MIN_ACTIONS", 20, 0, 10**6, integer=True),
            gate_min_tasks=_number(s, "VIGIL_GATE_MIN_TASKS", 20, 0, 10**6, integer=True),
            gate_window_days=_number(s, "VIGIL_GATE_WINDOW_DAYS", 30, 1, 365, integer=True),
            gate_valid_s=_number(s, "VIGIL_GATE_VALID_S", 7 * day, 60, 365 * day, integer=True),
            override_reasons=reasons,
        )
        if out.window_s > out.current_days * day:
            raise ConfigError("VIGIL_MONITOR_WINDOW_S must not exceed the current drift period")
        return out

    def reason_label(self, reason: str | None) -> str:
        """A metric label for an override reason: a known code, else ``other`` (never free text)."""
        return reason if reason in self.override_reasons else ("none" if not reason else "other")
