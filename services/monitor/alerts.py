"""Raising an alert: a row in ``monitor_alerts`` (once per id), a metric and a structured log event.

The log event ``monitor.alert`` carries tenant, kind, dimension, value and threshold: numbers and
codes only, never note text or patient ids.
"""
from __future__ import annotations

from services.core.logging import get_logger
from services.monitor import metrics
from services.monitor.store import Alert, MonitorStore

log = get_logger("vigil.monitor")


async def raise_alert(store: MonitorStore, tenant: str, alert: Alert) -> bool:
    """Record and announce ``alert``; returns False when this alert id was already raised."""
    metrics.ALERT_ACTIVE.labels(tenant, alert.kind, alert.dimension).set(1)
    new = await store.add_alert(tenant, alert)
    if new:
        metrics.ALERTS.labels(tenant, alert.kind, alert.dimension).inc()
        log.warning("monitor.alert", tenant=tenant, kind=alert.kind, dimension=alert.dimension,
                    value=round(alert.value, 6), threshold=alert.threshold, alert_id=alert.id)
    return new


def clear(tenant: str, kind: str, dimension: str) -> None:
    metrics.ALERT_ACTIVE.labels(tenant, kind, dimension).set(0)
