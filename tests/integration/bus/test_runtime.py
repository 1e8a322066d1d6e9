"""The stage runtime on the real broker, Redis and PostgreSQL."""
from __future__ import annotations

import asyncio
import collections
import json

from prometheus_client import REGISTRY

from services.core.bus import FatalError, RetryableError, dlq_topic
from services.core.bus.failures import DLQ_HEADERS
from services.core.events import decode, encode, header_value
from services.core.tenancy import topic_name

from tests.integration.bus.conftest import findings_for, publish, read_topic, resource_event, running, spec


async def test_poison_event_dead_lettered_while_others_flow(stack, tenant_id, topics):
    calls = collections.Counter()

    async def handler(event, ctx):
        calls[event.id] += 1
        if event.key == "poison":
            raise RetryableError("upstream keeps failing", code="http_503")
        ctx.emit("findings", findings_for(event, ctx))

    s = spec("poisoned", handler)
    await topics(s)
    poison = resource_event(tenant_id, "poison", 0)
    healthy = [resource_event(tenant_id, f"p{i}", 0) for i in range(20)]
    await publish(stack, tenant_id, [poison] + healthy)
    async with running(stack, tenant_id, s):
        outputs = await read_topic(stack, topic_name(tenant_id, "findings"), 20)
        dead = await read_topic(stack, dlq_topic(tenant_id), 1, timeout=30)
    assert sorted(decode(m.key, m.value, m.headers).causationid for m in outputs) == sorted(e.id for e in healthy)
    assert len(dead) == 1
    record = dead[0]
    assert record.value == encode(poison).value  # payload byte for byte
    assert header_value(record.headers, "ce_type") == "vigil.ehr.resource-changed"  # original type kept
    for name in DLQ_HEADERS:
        assert header_value(record.headers, name), name
    assert header_value(record.headers, "dlq-original-topic") == topic_name(tenant_id, "ehr-events")
    assert header_value(record.headers, "dlq-stage") == "poisoned"
    assert header_value(record.headers, "dlq-error-class") == "RetryableError"
    assert header_value(record.headers, "dlq-error-code") == "http_503"
    expected_attempts = s.retry.quick_attempts * (1 + s.retry.levels)  # 2 x (1 + 2) = 6
    assert header_value(record.headers, "dlq-attempts") == str(expected_attempts)
    assert calls[poison.id] == expected_attempts
    assert int(header_value(record.headers, "dlq-first-failure")) <= int(header_value(record.headers, "dlq-last-failure"))
    # the record is the whole dead letter (the runtime writes no table): stack and history ride along
    stack_trace = header_value(record.headers, "dlq-stack")
    assert "Traceback" in stack_trace and "upstream keeps failing" in stack_trace
    history = json.loads(header_value(record.headers, "dlq-history"))
    assert len(history) == 1 + s.retry.levels and history[-1]["attempts"] == expected_attempts


async def test_transient_failure_recovers_and_is_processed_once(stack, tenant_id, topics):
    calls = collections.Counter()
    succeeded = collections.Counter()

    async def handler(event, ctx):
        calls[event.id] += 1
        if event.key == "flaky" and calls[event.id] <= 3:  # fails both quick tries and the first retry once
            raise TimeoutError()
        ctx.emit("findings", findings_for(event, ctx))
        succeeded[event.id] += 1

    s = spec("transient", handler)
    await topics(s)
    flaky = resource_event(tenant_id, "flaky", 0)
    await publish(stack, tenant_id, [flaky, resource_event(tenant_id, "steady", 0)])
    async with running(stack, tenant_id, s):
        outputs = await read_topic(stack, topic_name(tenant_id, "findings"), 2, settle=1.5)
    assert succeeded[flaky.id] == 1 and calls[flaky.id] == 4
    out_ids = [decode(m.key, m.value, m.headers).id for m in outputs]
    assert len(out_ids) == 2 and len(set(out_ids)) == 2
    assert await read_topic(stack, dlq_topic(tenant_id), 0, timeout=0.5) == []


async def test_later_event_never_overtakes_earlier_event_in_retry(stack, tenant_id, topics):
    order = collections.defaultdict(list)
    calls = collections.Counter()

    async def handler(event, ctx):
        calls[event.id] += 1
        if event.key == "a" and event.data["versionId"] == "0" and calls[event.id] <= 4:
            raise RetryableError("busy", code="http_429")  # 4 failures: quick x2, retry.1 x2 -> done in retry.2
        order[event.key].append(int(event.data["versionId"]))
        ctx.emit("findings", findings_for(event, ctx))

    s = spec("ordered", handler)
    await topics(s)
    a_events = [resource_event(tenant_id, "a", n) for n in range(4)]
    b_events = [resource_event(tenant_id, "b", n) for n in range(4)]
    await publish(stack, tenant_id, a_events[:2] + b_events)

    def parked() -> float:
        return REGISTRY.get_sample_value("vigil_stage_parked_total", {"tenant": tenant_id, "stage": "ordered"}) or 0

    async with running(stack, tenant_id, s):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while not parked():  # a/0 failed its quick tries and waits in retry.1; a/1 is parked behind it
            assert loop.time() < deadline, "a/1 never parked behind a/0"
            await asyncio.sleep(0.01)
        await publish(stack, tenant_id, a_events[2:])  # arrive while a/0 is still waiting in retry
        await read_topic(stack, topic_name(tenant_id, "findings"), 8)
    assert order["a"] == [0, 1, 2, 3]
    assert parked() == 3  # a/1, a/2 and a/3 waited behind a/0
    assert order["b"] == [0, 1, 2, 3]


async def test_invalid_payload_goes_to_dlq_and_consumer_keeps_going(stack, tenant_id, topics):
    seen = []

    async def handler(event, ctx):
        seen.append(event.id)
        if event.data["id"] == "doc-bad-output-0":
            ctx.emit("findings", ctx.child("vigil.extraction.findings", {"patient": "x"}))  # invalid output
        if event.key == "fatal":
            raise FatalError("contract broken", code="contract")

    s = spec("validating", handler)
    await topics(s)
    good = resource_event(tenant_id, "good", 0)
    bad = resource_event(tenant_id, "bad", 0)
    record = encode(bad)
    broken = record.value.replace(b'"action":"create"', b'"action":"explode"')
    from aiokafka import AIOKafkaProducer
    producer = AIOKafkaProducer(acks="all", **stack.kafka.client_kwargs())
    await producer.start()
    try:
        topic = topic_name(tenant_id, "ehr-events")
        await producer.send_and_wait(topic, broken, key=record.key, headers=record.headers)
        await producer.send_and_wait(topic, b"not an event at all", key=b"garbage")
    finally:
        await producer.stop()
    await publish(stack, tenant_id, [resource_event(tenant_id, "bad-output", 0), resource_event(tenant_id, "fatal", 0), good])
    async with running(stack, tenant_id, s) as runner:
        dead = await read_topic(stack, dlq_topic(tenant_id), 4)
        for _ in range(50):
            if good.id in seen:
                break
            await asyncio.sleep(0.1)
        assert runner.health()["live"]
    assert good.id in seen and bad.id not in seen
    codes = sorted(header_value(m.headers, "dlq-error-code") for m in dead)
    assert codes == ["contract", "envelope", "schema", "schema"]
    schema_msgs = [header_value(m.headers, "dlq-message") for m in dead if header_value(m.headers, "dlq-error-code") == "schema"]
    assert any("action: enum" in msg for msg in schema_msgs)
    assert any(m.value == broken for m in dead) and any(m.value == b"not an event at all" for m in dead)


async def test_redelivered_blocker_after_a_crash_does_not_stall_its_patient(stack, tenant_id, topics):
    """A stage died after blocking patient "c" for event c/0 but before c/0's retry record was
    acknowledged: c/0 comes back on the input topic with the key still blocked by itself."""
    from services.core.bus.ledger import Ledger
    from services.core import kv

    seen = []

    async def handler(event, ctx):
        seen.append(int(event.data["versionId"]))
        ctx.emit("findings", findings_for(event, ctx))

    s = spec("crashwindow", handler)
    await topics(s)
    events = [resource_event(tenant_id, "c", n) for n in range(3)]
    redis = kv.admin_client(stack)
    try:
        await Ledger(redis, tenant_id, s.name, ttl_s=60).block("c", events[0].id)
    finally:
        await redis.aclose()
    await publish(stack, tenant_id, events)
    async with running(stack, tenant_id, s):
        await read_topic(stack, topic_name(tenant_id, "findings"), 3, timeout=20)
    assert seen == [0, 1, 2]


async def test_infrastructure_failure_mid_batch_rewinds_instead_of_killing_the_runner(stack, tenant_id, topics):
    """Redis going away under the idempotency ledger (a restart) is not the event's fault: the batch
    is rewound and processed once Redis answers again; the runner stays alive and nothing is lost."""
    seen = []

    async def handler(event, ctx):
        seen.append(event.id)
        ctx.emit("findings", findings_for(event, ctx))

    s = spec("rewind", handler)
    await topics(s)
    events = [resource_event(tenant_id, f"p{n}", n) for n in range(6)]
    async with running(stack, tenant_id, s) as runner:
        real_lookup, failures = runner.ledger.lookup, []

        async def flaky_lookup(ids, keys):
            if len(failures) < 2:
                failures.append(1)
                raise ConnectionError("redis restarting")
            return await real_lookup(ids, keys)

        runner.ledger.lookup = flaky_lookup
        await publish(stack, tenant_id, events)
        outputs = await read_topic(stack, topic_name(tenant_id, "findings"), 6, timeout=20)
        assert runner.health()["live"]
    assert len(failures) == 2
    assert sorted(set(seen)) == sorted(e.id for e in events) and len(outputs) == 6
    assert await read_topic(stack, dlq_topic(tenant_id), 0, timeout=0.5) == []


async def test_a_stage_passes_over_types_it_does_not_handle_without_decoding_them(stack, tenant_id, topics):
    """``StageSpec.types``: a record of another type is never decoded, handled or marked (a broken
    one is not dead-lettered either) and its offset is committed; a record with no type header is
    still decoded and dead-lettered."""
    from aiokafka import AIOKafkaProducer
    from tests.fixtures.kafka import wait_idle

    seen = []

    async def handler(event, ctx):
        seen.append(event.id)

    s = spec("typed", handler, types=frozenset({"vigil.ehr.resource-changed"}))
    await topics(s)
    wanted = [resource_event(tenant_id, "p1", n) for n in range(3)]
    other = encode(resource_event(tenant_id, "p2", 0))
    other_headers = [(k, b"vigil.scheduling.message" if k == "ce_type" else v) for k, v in other.headers]
    producer = AIOKafkaProducer(acks="all", **stack.kafka.client_kwargs())
    await producer.start()
    try:
        topic = topic_name(tenant_id, "ehr-events")
        await producer.send_and_wait(topic, other.value, key=other.key, headers=other_headers)
        await producer.send_and_wait(topic, b"another type, not even JSON", key=b"p3",
                                     headers=[("ce_type", b"vigil.scheduling.message")])
        await producer.send_and_wait(topic, b"no type header", key=b"p4")
    finally:
        await producer.stop()
    await publish(stack, tenant_id, wanted)
    async with running(stack, tenant_id, s) as runner:
        await wait_idle(stack, tenant_id, [s])
        done, _ = await runner.ledger.lookup([e.id for e in wanted] + [resource_event(tenant_id, "p2", 0).id], [])
    assert sorted(seen) == sorted(e.id for e in wanted)
    assert done == {e.id for e in wanted}  # the passed-over event is not in the ledger
    dead = await read_topic(stack, dlq_topic(tenant_id), 1, settle=0.5)
    assert [m.value for m in dead] == [b"no type header"]
    assert header_value(dead[0].headers, "dlq-error-code") == "envelope"


async def test_key_lanes_run_one_partitions_patients_side_by_side_and_each_patient_in_order(stack, tenant_id, topics):
    """``key_lanes``: a partition's records are split by key into concurrent lanes. More events are
    in the handler at once than there are partitions; every patient's events still arrive in
    order (including one whose first event waits in a retry topic while its later ones park),
    each event is handled once, and the group commits every offset."""
    from dataclasses import replace

    from bench.crawl import committed
    from tests.integration.bus.conftest import FAST_TUNING

    order, calls = collections.defaultdict(list), collections.Counter()
    inflight, most = 0, 0

    async def handler(event, ctx):
        nonlocal inflight, most
        calls[event.id] += 1
        if event.key == "held" and event.data["versionId"] == "0" and calls[event.id] <= 2:
            raise RetryableError("busy", code="http_429")  # both quick tries fail: retry.1, later ones park
        inflight += 1
        most = max(most, inflight)
        try:
            await asyncio.sleep(0.02)
        finally:
            inflight -= 1
        order[event.key].append(int(event.data["versionId"]))
        ctx.emit("findings", findings_for(event, ctx))

    s = spec("keylanes", handler, tuning=replace(FAST_TUNING, key_lanes=4))
    await topics(s)
    patients = ["held", *(f"k{i}" for i in range(23))]
    events = [resource_event(tenant_id, p, n) for n in range(4) for p in patients]  # interleaved
    await publish(stack, tenant_id, events)
    async with running(stack, tenant_id, s):
        await read_topic(stack, topic_name(tenant_id, "findings"), len(events), timeout=60)
    partitions = 4
    assert most > partitions, f"at most {most} events in the handler at once"
    assert all(order[p] == [0, 1, 2, 3] for p in patients), {p: order[p] for p in patients if order[p] != [0, 1, 2, 3]}
    assert sum(1 for e in events if calls[e.id]) == len(events)
    assert all(n == 1 for i, n in calls.items() if i != events[0].id) and calls[events[0].id] == 3
    done, _ = await committed(stack, tenant_id, "keylanes", "ehr-events")  # the dev broker's end offsets lag
    assert done == len(events)
