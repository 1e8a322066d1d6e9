"""Prometheus metrics of every stage, labelled by tenant and stage only (never by patient or event)."""
from __future__ import annotations

import math
from bisect import bisect_left
from typing import Iterator, Sequence

from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

LABELS = ("tenant", "stage")


class Latencies:
    """One histogram series: ``observe`` is a bisect and two additions. ``prometheus_client``'s
    ``Histogram.observe`` takes a lock twice per call, a cost the handler of every event paid;
    a stage's series are only touched from its event loop, and /metrics reads them there too."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds, self.counts, self.total = bounds, [0] * len(bounds), 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1  # le: a value on a bound counts in it
        self.total += seconds


class LatencyHistogram(Collector):
    """A labelled Prometheus histogram (exposed exactly as ``prometheus_client.Histogram`` exposes
    one: ``_bucket{le=...}`` cumulative, ``_count``, ``_sum``) built on ``Latencies``."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float],
                 registry: CollectorRegistry | None = REGISTRY):
        self.name, self.documentation, self.labelnames = name, documentation, tuple(labelnames)
        bounds = tuple(float(b) for b in buckets)
        self.bounds = bounds if bounds[-1] == math.inf else (*bounds, math.inf)
        self._series: dict[tuple[str, ...], Latencies] = {}
        if registry is not None:
            registry.register(self)

    def labels(self, **labels: str) -> Latencies:
        key = tuple(str(labels[name]) for name in self.labelnames)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = Latencies(self.bounds)
        return series

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for key, series in list(self._series.items()):
            cumulative, buckets = 0, []
            for bound, count in zip(self.bounds, list(series.counts)):
                cumulative += count
                buckets.append((floatToGoString(bound), cumulative))
            family.add_metric(list(key), buckets, series.total)
        yield family

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)


CONSUMED = Counter("vigil_stage_consumed_total", "Records taken from the input and retry topics", LABELS)
SUCCEEDED = Counter("vigil_stage_succeeded_total", "Events whose handler succeeded", LABELS)
RETRIED = Counter("vigil_stage_retried_total", "Events sent to a retry topic", LABELS)
DEAD_LETTERED = Counter("vigil_stage_dead_lettered_total", "Events sent to the dead-letter topic", LABELS)
DUPLICATES = Counter("vigil_stage_duplicates_total", "Redelivered events skipped by the ledger", LABELS)
PARKED = Counter("vigil_stage_parked_total", "Events parked behind an earlier event of their key", LABELS)
LATENCY = LatencyHistogram("vigil_stage_handler_seconds", "Handler latency per attempt", LABELS,
                           buckets=(0.001, 0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
LAG = Gauge("vigil_stage_consumer_lag", "Records behind the high watermark on the input topic", LABELS)
ASSIGNED = Gauge("vigil_stage_assigned_partitions", "Partitions of the input topic this consumer holds", LABELS)
LAST_PROGRESS = Gauge("vigil_stage_last_progress_timestamp", "Unix time of the last completed poll loop", LABELS)
