"""Write the report: ``index.html`` plus one PNG per chart into ``out``."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from services.monitor import figures, units
from services.monitor.config import MonitorSettings
from services.monitor.report import plots
from services.monitor.report.data import collect
from services.monitor.store import MonitorStore

TEMPLATES = Path(__file__).with_name("templates")
IMAGES = {"alerts": "alerts_per_bucket.png", "alerts_week": "alerts_per_week.png", "override": "override_rate.png",
          "override_week": "override_rate_per_week.png", "tta": "time_to_alert.png", "drift": "drift_psi.png",
          "cost": "cost.png"}


async def write_report(store: MonitorStore, ms: MonitorSettings, tenant: str, out: Path,
                       since: datetime | None = None, until: datetime | None = None) -> Path:
    """The report of ``[since, until)`` (default: everything counted); the figures are reconciled
    with the decision ledger of the same database."""
    out.mkdir(parents=True, exist_ok=True)
    start, end = await figures.bounds(store, tenant, since, until)
    ledger = await figures.ledger_rows(store.pools, tenant, start)
    data = await collect(store, ms, tenant, start, end, ledger)
    plots.alerts_per_bucket(data, out / IMAGES["alerts"])
    plots.alerts_per_week(data, out / IMAGES["alerts_week"])
    plots.override_rate(data, out / IMAGES["override"], ms.gate_max_override_rate, ms.override_rate_max)
    plots.override_rate_weekly(data, out / IMAGES["override_week"], ms.gate_max_override_rate, ms.override_rate_max)
    plots.time_to_alert(data, out / IMAGES["tta"], ms.gate_max_tta_p95_s)
    plots.drift(data, out / IMAGES["drift"], ms.psi_max)
    plots.cost(data, out / IMAGES["cost"])
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
    html = env.get_template("report.html").render(
        tenant=tenant, s=data.summary, d=data, f=data.f, ms=ms, images=IMAGES, alerts=data.alerts, gold=data.gold,
        gates=data.gates, ledger_read=ledger is not None, sources=figures.SOURCES,
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"), pct=units.percent, dur=units.duration)
    index = out / "index.html"
    index.write_text(html, encoding="utf-8")
    return index
