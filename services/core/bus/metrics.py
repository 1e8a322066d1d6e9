"""Prometheus metrics of every stage, labelled by tenant and stage only (never by patient or event)."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LABELS = ("tenant", "stage")

CONSUMED = Counter("vigil_stage_consumed_total", "Records taken from the input and retry topics", LABELS)
SUCCEEDED = Counter("vigil_stage_succeeded_total", "Events whose handler succeeded", LABELS)
RETRIED = Counter("vigil_stage_retried_total", "Events sent to a retry topic", LABELS)
DEAD_LETTERED = Counter("vigil_stage_dead_lettered_total", "Events sent to the dead-letter topic", LABELS)
DUPLICATES = Counter("vigil_stage_duplicates_total", "Redelivered events skipped by the ledger", LABELS)
PARKED = Counter("vigil_stage_parked_total", "Events parked behind an earlier event of their key", LABELS)
LATENCY = Histogram("vigil_stage_handler_seconds", "Handler latency per attempt", LABELS,
                    buckets=(0.001, 0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
LAG = Gauge("vigil_stage_consumer_lag", "Records behind the high watermark on the input topic", LABELS)
LAST_PROGRESS = Gauge("vigil_stage_last_progress_timestamp", "Unix time of the last completed poll loop", LABELS)
