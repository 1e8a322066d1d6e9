"""Two batches in flight: a batch's tail (acks, ledger, commit) runs while the next batch is handled.

On the real broker and Redis: a failing tail rewinds both batches and nothing is lost, offsets
are committed in order up to the end, the in-flight batch's events count as done for the next
batch, a handler past its deadline times out, and batched produces land on the partitions the
default partitioner picks, in order.
"""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import REGISTRY

from services.core.bus import ConsumerTuning, Publisher, dlq_topic
from services.core.bus.publisher import partition_of
from services.core.events import decode, encode
from services.core.tenancy import topic_name

from tests.integration.bus.conftest import FAST_TUNING, findings_for, publish, read_topic, resource_event, running, spec


async def _committed(settings, tenant_id: str, stage: str, topic: str) -> dict[int, int]:
    """The committed offset per partition of ``topic`` for the stage's consumer group."""
    consumer = AIOKafkaConsumer(group_id=f"vigil.{tenant_id}.{stage}", enable_auto_commit=False,
                                **settings.kafka.client_kwargs())
    await consumer.start()
    try:
        return {p: await consumer.committed(TopicPartition(topic, p)) or 0 for p in range(4)}
    finally:
        await consumer.stop()


async def _wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


def _counting_forwarder():
    """A handler that emits one findings event per input, and how often it saw each event id."""
    seen = collections.Counter()

    async def handler(event, ctx):
        seen[event.id] += 1
        ctx.emit("findings", findings_for(event, ctx))

    return seen, handler


async def test_failed_tail_rewinds_both_batches_and_loses_nothing(stack, tenant_id, topics):
    """The first batch's ledger write fails after the second batch was handled: both are
    rewound (nothing of either was committed), handled again, and every offset ends committed."""
    seen, handler = _counting_forwarder()
    s = spec("tailfail", handler)
    await topics(s)
    first = [resource_event(tenant_id, f"a{n}", 0) for n in range(5)]
    second = [resource_event(tenant_id, f"b{n}", 0) for n in range(5)]
    async with running(stack, tenant_id, s) as runner:
        real_mark, calls = runner.ledger.mark_done, []

        async def slow_then_failing_mark(ids):
            calls.append(list(ids))
            if len(calls) == 1:
                await _wait_for(lambda: all(seen[e.id] for e in second))  # batch 2 is handled meanwhile
                raise ConnectionError("redis restarting")
            await real_mark(ids)

        runner.ledger.mark_done = slow_then_failing_mark
        await publish(stack, tenant_id, first)
        await _wait_for(lambda: bool(calls))
        await publish(stack, tenant_id, second)
        await _wait_for(lambda: all(seen[e.id] >= 2 for e in first) and len(calls) >= 2)
        outputs = await read_topic(stack, topic_name(tenant_id, "findings"), 20, timeout=5, settle=0.5)
        assert runner.health()["live"]
    assert all(seen[e.id] == 2 for e in first), "the failed batch is handled again"
    assert all(seen[e.id] >= 1 for e in second)
    ids = {decode(m.key, m.value, m.headers).id for m in outputs}
    assert len(ids) == 10, "one output id per input, however often it was produced"
    inputs = await read_topic(stack, topic_name(tenant_id, "ehr-events"), 10)
    ends = {p: 1 + max((m.offset for m in inputs if m.partition == p), default=-1) for p in range(4)}
    assert await _committed(stack, tenant_id, s.name, topic_name(tenant_id, "ehr-events")) == ends
    assert sum(ends.values()) == 10
    assert await read_topic(stack, dlq_topic(tenant_id), 0, timeout=0.5) == []


async def test_events_of_the_batch_in_flight_count_as_done(stack, tenant_id, topics):
    """A redelivered copy of an event arrives while the batch that handled it is still waiting
    for its ledger write: the next batch skips it instead of handling it twice."""
    seen, handler = _counting_forwarder()
    s = spec("inflight", handler)
    await topics(s)
    event = resource_event(tenant_id, "dup", 0)
    record = encode(event)
    async with running(stack, tenant_id, s) as runner:
        real_mark, release = runner.ledger.mark_done, asyncio.Event()

        async def held_mark(ids):
            await release.wait()
            await real_mark(ids)

        runner.ledger.mark_done = held_mark
        await publish(stack, tenant_id, [event])
        await _wait_for(lambda: seen[event.id] == 1)
        producer = AIOKafkaProducer(acks="all", **stack.kafka.client_kwargs())
        await producer.start()
        try:  # the same record again (a producer retry upstream)
            await producer.send_and_wait(topic_name(tenant_id, "ehr-events"), record.value, key=record.key,
                                         headers=record.headers)
        finally:
            await producer.stop()
        labels = {"tenant": tenant_id, "stage": "inflight"}
        await _wait_for(lambda: (REGISTRY.get_sample_value("vigil_stage_duplicates_total", labels) or 0) >= 1)
        release.set()
        await read_topic(stack, topic_name(tenant_id, "findings"), 1, timeout=10)
    assert seen[event.id] == 1


async def test_handler_past_its_deadline_times_out_and_is_retried(stack, tenant_id, topics):
    calls = collections.Counter()

    async def handler(event, ctx):
        calls[event.id] += 1
        if event.key == "slow" and calls[event.id] == 1:
            await asyncio.sleep(60)  # hangs: the deadline ends it
        ctx.emit("findings", findings_for(event, ctx))

    s = spec("deadline", handler, tuning=dataclasses.replace(FAST_TUNING, handler_timeout_s=0.5))
    await topics(s)
    slow, steady = resource_event(tenant_id, "slow", 0), resource_event(tenant_id, "steady", 0)
    started = time.monotonic()
    async with running(stack, tenant_id, s) as runner:
        await publish(stack, tenant_id, [slow, steady])
        outputs = await read_topic(stack, topic_name(tenant_id, "findings"), 2, timeout=20)
        assert runner.health()["live"]
    assert time.monotonic() - started < 20
    assert calls[slow.id] == 2 and calls[steady.id] == 1
    assert {decode(m.key, m.value, m.headers).causationid for m in outputs} == {slow.id, steady.id}


async def test_batched_produce_keeps_partitions_and_order(stack, tenant_id, topics):
    await topics()
    small = AIOKafkaProducer(acks="all", max_batch_size=1024, **stack.kafka.client_kwargs(tenant_id))
    async with Publisher(stack, tenant_id, producer=small) as pub:
        await small.start()
        try:
            events = [resource_event(tenant_id, f"k{n % 7}", n) for n in range(60)]
            findings, dlq = topic_name(tenant_id, "findings"), dlq_topic(tenant_id)
            records = [(findings if n % 2 else dlq, *_record(e)) for n, e in enumerate(events)]
            futures = await pub.send_records(records)
            assert len(futures) > 8, "1 KiB batches: the 60 records need more than one batch per partition"
            await asyncio.gather(*futures)
            with pytest.raises(PermissionError):
                await pub.send_records([("vigil.othertenant.findings", b"k", b"{}", [])])
            reference = [await pub.send_raw(findings, *_record(e)) for e in events[:7]]  # the per-record path
            await asyncio.gather(*reference)
        finally:
            await small.stop()
    by_topic = {t: await read_topic(stack, t, n) for t, n in ((findings, 37), (dlq, 30))}
    for topic, msgs in by_topic.items():
        for m in msgs:
            assert m.partition == partition_of(m.key, 4)
        per_key = collections.defaultdict(list)
        for m in sorted(msgs, key=lambda m: (m.partition, m.offset)):
            per_key[m.key].append(int(decode(m.key, m.value, m.headers).data["versionId"]))
        for versions in per_key.values():
            head = versions[:-1] if topic == findings else versions  # the reference copy comes last
            assert head == sorted(head)
    assert sum(len(v) for v in by_topic.values()) == 67


def _record(event):
    record = encode(event)
    return record.key, record.value, record.headers


async def test_offsets_are_committed_at_most_every_interval_and_on_stop(stack, tenant_id, topics):
    """Batches of one event, a second apart or less: their ledger marks are written at once, their
    offsets wait for the commit interval; an idle stage commits once the interval has passed, and a
    stopping one commits what is left."""
    seen, handler = _counting_forwarder()
    slow = spec("coalesce", handler, tuning=dataclasses.replace(FAST_TUNING, commit_interval_ms=60_000))
    fast = spec("coalesce2", handler, tuning=dataclasses.replace(FAST_TUNING, commit_interval_ms=300))
    for s in (slow, fast):
        await topics(s)
    topic = topic_name(tenant_id, "ehr-events")
    events = [resource_event(tenant_id, f"c{n}", 0) for n in range(3)]
    async with running(stack, tenant_id, slow) as runner, running(stack, tenant_id, fast) as runner2:
        commits = {runner: 0, runner2: 0}
        for r in (runner, runner2):
            real = r._consumer.commit  # noqa: SLF001

            async def counted(offsets, _real=real, _r=r):
                commits[_r] += 1
                return await _real(offsets)
            r._consumer.commit = counted  # noqa: SLF001
        for n, event in enumerate(events):  # one batch each
            await publish(stack, tenant_id, [event])
            await _wait_for(lambda: seen[event.id] == 2)
            await _wait_for(lambda: runner._tail is None and runner2._tail is None)  # noqa: SLF001
            done, _ = await runner.ledger.lookup([event.id], [])
            assert done == {event.id}, "the ledger mark does not wait for the commit"
        assert commits[runner] == 1  # the first batch's, then nothing for 60 s
        assert sum((await _committed(stack, tenant_id, slow.name, topic)).values()) == 1
        await _wait_for(lambda: not runner2._commits.pending, timeout=5)  # noqa: SLF001  (idle: due after 0.3 s)
        assert sum((await _committed(stack, tenant_id, fast.name, topic)).values()) == 3
    assert sum((await _committed(stack, tenant_id, slow.name, topic)).values()) == 3  # committed on stop
    assert commits[runner] == 2
