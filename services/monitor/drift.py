"""Drift checks: PSI of category rates and note-length / note-type mix, and the gold re-score.

PSI (``services.monitor.stats.psi``) compares the *current* period with the *baseline* period
just before it, both anchored at the tenant's stream time (the end of its newest window, so a
replay of old data is judged by its own clock, not the wall clock)::

    |<------ baseline_days ------>|<-- current_days -->|
                                                       ^ end of the newest window

Dimensions (bins): ``category`` = findings per category plus ``(none)`` for notes without a
finding; ``note_length`` = notes per length bin; ``note_type`` = notes per note-type code.
A dimension with fewer than ``drift_min_count`` observations in either period is skipped.

The gold re-score runs `vigil eval` with the tenant's live engine; the first score of a gold
file is the baseline, and a later micro F1 lower by more than ``f1_drop_max`` raises an alert.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from services.core.logging import get_logger
from services.monitor import alerts, metrics
from services.monitor.config import MonitorSettings
from services.monitor.evalrun import run_eval, tenant_engine
from services.monitor.stats import psi
from services.monitor.store import Alert, MonitorStore

log = get_logger("vigil.monitor")
DIMENSIONS = ("category", "note_length", "note_type")
NONE_BIN = "(none)"


async def distribution(store: MonitorStore, tenant: str, dimension: str, start: datetime,
                       end: datetime) -> dict[str, float]:
    if dimension == "category":
        sums = await store.sums(tenant, ["findings", "notes_without_findings"], start, end)
        return {(NONE_BIN if metric == "notes_without_findings" else category): value
                for (metric, category), value in sums.items()}
    return await store.prefixed_sums(tenant, f"{dimension}:", start, end)


async def periods(store: MonitorStore, ms: MonitorSettings, tenant: str):
    newest = await store.latest_window_start(tenant)
    if newest is None:
        return None
    end = newest + timedelta(seconds=ms.window_s)
    split = end - timedelta(days=ms.current_days)
    return split - timedelta(days=ms.baseline_days), split, end


async def psi_check(store: MonitorStore, ms: MonitorSettings, tenant: str) -> dict[str, dict]:
    """PSI per dimension; raises an alert for each dimension over ``psi_max``."""
    bounds = await periods(store, ms, tenant)
    if bounds is None:
        return {}
    start, split, end = bounds
    out: dict[str, dict] = {}
    for dimension in DIMENSIONS:
        baseline = await distribution(store, tenant, dimension, start, split)
        current = await distribution(store, tenant, dimension, split, end)
        nb, nc = sum(baseline.values()), sum(current.values())
        entry = {"baseline_n": nb, "current_n": nc, "psi": None, "alert": False, "period_end": end.isoformat()}
        out[dimension] = entry
        if nb < ms.drift_min_count or nc < ms.drift_min_count:
            continue
        value = psi(baseline, current)
        entry["psi"] = value
        metrics.PSI.labels(tenant, dimension).set(value)
        if value > ms.psi_max:
            entry["alert"] = True
            await alerts.raise_alert(store, tenant, Alert(
                id=f"psi:{dimension}:{end.date().isoformat()}", kind="psi", dimension=dimension, value=value,
                threshold=ms.psi_max, period_end=end,
                details={"baseline_n": nb, "current_n": nc, "baseline_days": ms.baseline_days,
                         "current_days": ms.current_days}))
        else:
            alerts.clear(tenant, "psi", dimension)
    return out


async def gold_rescore(store: MonitorStore, ms: MonitorSettings, tenants_file: Path, tenant: str,
                       *, gold: Path | None = None, env=None) -> dict:
    """Re-score the gold set with the tenant's live engine; alert on an F1 drop against the baseline."""
    gold = Path(gold or ms.gold)
    engine = tenant_engine(tenants_file, tenant)
    report = await run_eval(gold, engine, tenant, resamples=ms.eval_resamples, env=env)
    previous = [s for s in await store.gold_scores(tenant) if s["gold"] == str(gold)]
    row = await store.add_gold_score(tenant, report, str(gold))
    metrics.GOLD_F1.labels(tenant, row["engine_version"]).set(row["f1"])
    result = {"score": row, "baseline": previous[0] if previous else row, "alert": False}
    drop = result["baseline"]["f1"] - row["f1"]
    result["drop"] = drop
    if previous and drop > ms.f1_drop_max:
        result["alert"] = True
        await alerts.raise_alert(store, tenant, Alert(
            id=f"gold-f1-drop:{row['id']}", kind="gold-f1-drop", dimension="gold", value=drop,
            threshold=ms.f1_drop_max, details={"baseline_f1": result["baseline"]["f1"], "f1": row["f1"],
                                               "engine": row["engine"], "engine_version": row["engine_version"]}))
    elif previous:
        alerts.clear(tenant, "gold-f1-drop", "gold")
    log.info("monitor.gold_rescored", tenant=tenant, engine=row["engine"], f1=round(row["f1"], 4),
             drop=round(drop, 4), alert=result["alert"])
    return result
