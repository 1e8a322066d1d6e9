"""Benchmark: the stage runtime vs a raw aiokafka consume-produce loop, same broker, same run.

Both read N CloudEvents from their own input topic and write one event per input to their own
output topic with acks=all, committing offsets only after a batch's produces are acknowledged.
The raw loop copies bytes: poll, send each record, await the acks, commit. The runtime stage
decodes the envelope, validates the input, checks the Redis ledger, runs a handler that derives
a child event (deterministic id), validates and encodes it, produces it (one batch per
partition), awaits the acks, marks the ledger and commits - the acks, ledger and commit of one
batch overlapping the handling of the next. Both producers are built the same way
(``publisher.make_producer``: acks=all, same linger and batch size) and both consumers poll the
same batch size with the same fetch long-poll (``FETCH_MAX_WAIT_MS``). Timing starts when the
first batch is received (group join excluded) and ends when the batch holding the last event
is committed. Both loops are CPU-bound on this Python process, so the CPU per event is printed
too, with the host's load average. The process runs with a stage host's garbage-collector
setting (``tune_gc``), which both loops get. A single pass over N events lasts about a second
and a shared box is noisy, so the loops take turns for ROUNDS rounds (each round a new
consumer group over the same input) and the ratio of the median rates is the result.

    python -m bench.runtime [N] [ROUNDS]
"""
from __future__ import annotations

import asyncio
import collections
import os
import statistics
import sys
import time
import uuid

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor

from services.core.bus import ConsumerTuning, Publisher, RetryPolicy, StageRunner, StageSpec
from services.core.bus.policy import tune_gc
from services.core.bus.publisher import make_producer
from services.core.bus.topics import ensure_stage_topics
from services.core.config import Settings
from services.core.events import Event
from services.core.logging import configure
from services.core.tenancy import Tenant, topic_name

DEFAULT_EVENTS = 20_000
ROUNDS = 5
BATCH = 500


def _event(tenant: str, i: int) -> Event:
    return Event.new("vigil.ehr.resource-changed", source="/bench", tenant=tenant, key=f"patient-{i % 200}",
                     data={"resourceType": "DocumentReference", "id": f"doc-{i}", "versionId": "1",
                           "patient": f"patient-{i % 200}", "action": "create", "origin": "backfill",
                           "lastUpdated": "2024-05-01T10:00:00Z"})


async def _fill(settings: Settings, tenant: str, stream: str, n: int) -> None:
    async with Publisher(settings, tenant) as pub:
        for start in range(0, n, 2000):
            await pub.publish_many(stream, [_event(tenant, i) for i in range(start, min(n, start + 2000))])


async def raw_loop(settings: Settings, src: str, dst: str, n: int) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) from the first batch to the last commit."""
    consumer = AIOKafkaConsumer(src, group_id=f"raw-{uuid.uuid4().hex[:6]}", enable_auto_commit=False,
                                auto_offset_reset="earliest", max_poll_records=BATCH, session_timeout_ms=6000,
                                heartbeat_interval_ms=500, rebalance_timeout_ms=6000,
                                fetch_max_wait_ms=ConsumerTuning().fetch_max_wait_ms,
                                partition_assignment_strategy=(RangePartitionAssignor,),
                                **settings.kafka.client_kwargs())
    producer = make_producer(settings)
    await consumer.start()
    await producer.start()
    done, started, cpu = 0, None, 0.0
    try:
        while done < n:
            batch = await consumer.getmany(timeout_ms=200, max_records=BATCH)
            if not batch:
                continue
            if started is None:
                started, cpu = time.perf_counter(), time.process_time()
            futures, offsets = [], {}
            for tp, msgs in batch.items():
                for m in msgs:
                    futures.append(await producer.send(dst, m.value, key=m.key, headers=list(m.headers)))
                offsets[tp] = msgs[-1].offset + 1
                done += len(msgs)
            await asyncio.gather(*futures)
            await consumer.commit(offsets)
        return time.perf_counter() - started, time.process_time() - cpu
    finally:
        await producer.stop()
        await consumer.stop()


class _TimedRunner(StageRunner):
    """Records when the first batch arrives and when the batch with the n-th event is committed
    (a batch's tail - acks, ledger, commit - finishes after the next batch started)."""

    def __init__(self, *a, n: int, **kw):
        super().__init__(*a, **kw)
        self.n, self.records, self.first, self.last = n, 0, None, None
        self.cpu_first = self.cpu_last = 0.0
        self.sizes: collections.deque[int] = collections.deque()
        self.finished = asyncio.Event()

    async def _process(self, batch) -> None:
        if self.first is None:
            self.first, self.cpu_first = time.perf_counter(), time.process_time()
        self.sizes.append(sum(len(msgs) for msgs in batch.values()))
        await super()._process(batch)

    async def _complete(self, *a, **kw) -> None:
        await super()._complete(*a, **kw)
        self.records += self.sizes.popleft()
        if self.records >= self.n and self.last is None:
            self.last, self.cpu_last = time.perf_counter(), time.process_time()
            self.finished.set()


async def runtime_stage(settings: Settings, tenant: str, n: int, stage: str = "bench") -> tuple[float, float]:
    """(wall seconds, process CPU seconds) from the first batch to the commit of the last."""
    handled = {"count": 0}

    async def forward(event: Event, ctx) -> None:
        handled["count"] += 1
        ctx.emit("findings", ctx.child("vigil.extraction.findings", {
            "document": {"id": event.data["id"], "versionId": event.data["versionId"]}, "patient": event.key,
            "engine": "rules", "engineVersion": "bench", "promptHash": None, "noteTime": None,
            "reviewRequired": False, "findings": []}))

    spec = StageSpec(name=stage, input_stream="ehr-events", handler=forward, retry=RetryPolicy(),
                     tuning=ConsumerTuning(max_batch=BATCH, poll_timeout_ms=200))
    runner = _TimedRunner(settings, tenant, spec, n=n)
    await runner.start()
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        await runner.finished.wait()
        if handled["count"] < n:
            raise RuntimeError(f"only {handled['count']} of {n} events reached the handler")
        return runner.last - runner.first, runner.cpu_last - runner.cpu_first
    finally:
        stop.set()
        await task
        await runner.stop()


async def _clean_up(settings: Settings, tenants: tuple[str, ...]) -> None:
    """Drop what a run leaves on the shared dev servers: its topics and its ledger keys (n per run,
    with the ledger's 7-day TTL: left behind, they slow every keyspace scan on that Redis)."""
    from aiokafka.admin import AIOKafkaAdminClient

    from services.core import kv

    redis = kv.admin_client(settings)
    try:
        for tenant in tenants:
            names = [name async for name in redis.scan_iter(match=f"vigil:{tenant}:*", count=10_000)]
            for start in range(0, len(names), 5000):
                await redis.unlink(*names[start:start + 5000])
    finally:
        await redis.aclose()
    admin = AIOKafkaAdminClient(**settings.kafka.client_kwargs())
    await admin.start()
    try:
        prefixes = tuple(topic_name(t, "") for t in tenants)
        doomed = [name for name in await admin.list_topics() if name.startswith(prefixes)]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()


async def main(n: int, rounds: int = ROUNDS) -> float:
    configure("warning")
    tune_gc()
    settings = Settings.from_env()
    raw_tenant, rt_tenant = (f"bench{uuid.uuid4().hex[:8]}" for _ in range(2))
    stages = [f"bench{r}" for r in range(rounds)]
    for t in (raw_tenant, rt_tenant):
        await ensure_stage_topics(settings, Tenant(id=t, partitions=4), [])
    await ensure_stage_topics(settings, Tenant(id=rt_tenant, partitions=4),
                              [StageSpec(name=stage, input_stream="ehr-events", handler=None) for stage in stages])
    runs = []
    try:
        await _fill(settings, raw_tenant, "ehr-events", n)
        await _fill(settings, rt_tenant, "ehr-events", n)
        for stage in stages:
            raw = await raw_loop(settings, topic_name(raw_tenant, "ehr-events"), topic_name(raw_tenant, "findings"), n)
            runtime = await runtime_stage(settings, rt_tenant, n, stage)
            runs.append((raw, runtime))
    finally:
        await _clean_up(settings, (raw_tenant, rt_tenant))
    print(f"events: {n} per loop and round, {rounds} rounds (the loops take turns)")
    for i, ((raw_s, raw_cpu), (rt_s, rt_cpu)) in enumerate(runs, 1):
        print(f"round {i}: raw {n / raw_s:,.0f} events/s ({raw_cpu / n * 1e6:.0f} us CPU/event), "
              f"runtime {n / rt_s:,.0f} events/s ({rt_cpu / n * 1e6:.0f} us CPU/event), "
              f"ratio {raw_s / rt_s:.2f}")
    raw_rate = statistics.median(n / raw_s for (raw_s, _), _ in runs)
    rt_rate = statistics.median(n / rt_s for _, (rt_s, _) in runs)
    print(f"raw aiokafka consume-produce loop: {raw_rate:,.0f} events/s (median)")
    print(f"stage runtime (validate, ledger, derive, produce, commit): {rt_rate:,.0f} events/s (median)")
    print(f"ratio runtime/raw: {rt_rate / raw_rate:.2f} (goal >= 0.80)")
    print("load average (1, 5, 15 min): " + ", ".join(f"{x:.2f}" for x in os.getloadavg()) +
          f" on {os.cpu_count()} CPUs")
    return rt_rate / raw_rate


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_EVENTS,
                     int(sys.argv[2]) if len(sys.argv) > 2 else ROUNDS))
