"""Prometheus metrics of the dead-letter index (labels: tenant and stage only, never patient or event).

Alert on ``vigil_dlq_depth > 0 for 15m``, ``vigil_dlq_oldest_age_seconds > 3600`` and any
increase of ``vigil_dlq_new_fingerprints_total`` (a failure site never seen before).
"""
from __future__ import annotations

from prometheus_client import Counter, Gauge

LABELS = ("tenant", "stage")

DEPTH = Gauge("vigil_dlq_depth", "Dead letters waiting (not replayed or purged)", LABELS)
OLDEST_AGE = Gauge("vigil_dlq_oldest_age_seconds", "Age of the oldest waiting dead letter's last failure", LABELS)
NEW_FINGERPRINTS = Counter("vigil_dlq_new_fingerprints_total", "Stack fingerprints seen for the first time", LABELS)
INDEXED = Counter("vigil_dlq_indexed_total", "Dead-letter records added to the index", LABELS)
REPLAYED = Counter("vigil_dlq_replayed_total", "Dead letters replayed into their stage's input topic", LABELS)


def publish_stats(rows, now_s: float) -> None:
    """Set the gauges from ``store.stats`` rows (zero for a stage whose depth went to zero)."""
    for r in rows:
        labels = {"tenant": r["tenant"], "stage": r["stage"]}
        DEPTH.labels(**labels).set(r["depth"])
        OLDEST_AGE.labels(**labels).set(max(0.0, now_s - r["oldest"].timestamp()) if r["oldest"] else 0.0)
