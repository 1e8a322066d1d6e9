"""The stage latency histogram is exposed exactly as prometheus_client's own Histogram (no servers)."""
from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from services.core.bus.metrics import LatencyHistogram

BUCKETS = (0.001, 0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def test_exposition_matches_prometheus_client_histogram():
    ours_registry, theirs_registry = CollectorRegistry(), CollectorRegistry()
    ours = LatencyHistogram("vigil_test_seconds", "Handler latency", ("tenant", "stage"), BUCKETS,
                            registry=ours_registry)
    theirs = Histogram("vigil_test_seconds", "Handler latency", ("tenant", "stage"), buckets=BUCKETS,
                       registry=theirs_registry)
    rng = random.Random(7)
    values = [rng.choice([0.0, 0.001, 0.005, 30.0, 31.0]) for _ in range(50)]  # on and past the bounds
    values += [rng.expovariate(20) for _ in range(2000)]
    for i, value in enumerate(values):
        labels = {"tenant": ("north", "south")[i % 2], "stage": "triage"}
        ours.labels(**labels).observe(value)
        theirs.labels(**labels).observe(value)
    ours_text = [line for line in generate_latest(ours_registry).decode().splitlines() if "_created" not in line]
    theirs_text = [line for line in generate_latest(theirs_registry).decode().splitlines()
                   if "_created" not in line]
    # The sums are added in the same order; compared as numbers all the same.
    assert [l for l in ours_text if "_sum" not in l] == [l for l in theirs_text if "_sum" not in l]
    ours_sums = {l.rsplit(" ", 1)[0]: float(l.rsplit(" ", 1)[1]) for l in ours_text if "_sum{" in l}
    theirs_sums = {l.rsplit(" ", 1)[0]: float(l.rsplit(" ", 1)[1]) for l in theirs_text if "_sum{" in l}
    assert ours_sums.keys() == theirs_sums.keys() and len(ours_sums) == 2
    assert all(abs(ours_sums[k] - theirs_sums[k]) < 1e-9 for k in ours_sums)
    per_series = len(values) // 2
    assert sum(1 for l in ours_text if 'le="+Inf"' in l and l.endswith(f" {per_series}.0")) == 2
    assert sum(1 for l in ours_text if "_count{" in l and l.endswith(f" {per_series}.0")) == 2
