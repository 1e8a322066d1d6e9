"""Write the report: ``index.html`` plus one PNG per plot into ``out``."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from services.monitor.config import MonitorSettings
from services.monitor.report import plots
from services.monitor.report.data import collect
from services.monitor.store import MonitorStore

TEMPLATES = Path(__file__).with_name("templates")
IMAGES = {"alerts": "alerts_per_day.png", "override": "override_rate.png", "tta": "time_to_alert.png",
          "drift": "drift_psi.png", "cost": "cost.png"}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _minutes(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f} min" if value < 120 else f"{value / 60:.1f} h"


async def write_report(store: MonitorStore, ms: MonitorSettings, tenant: str, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    data = await collect(store, ms, tenant)
    plots.alerts_per_day(data, out / IMAGES["alerts"])
    plots.override_rate(data, out / IMAGES["override"], ms.override_rate_max)
    plots.time_to_alert(data, out / IMAGES["tta"])
    plots.drift(data, out / IMAGES["drift"], ms.psi_max)
    plots.cost(data, out / IMAGES["cost"])
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
    html = env.get_template("report.html").render(
        tenant=tenant, s=data.summary, ms=ms, images=IMAGES, alerts=data.alerts, gold=data.gold, gates=data.gates,
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"), pct=_pct, minutes=_minutes)
    index = out / "index.html"
    index.write_text(html, encoding="utf-8")
    return index
