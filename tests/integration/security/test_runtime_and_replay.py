"""Kafka through the stage runtime, and DLQ replay: a stage of tenant A cannot consume or emit
outside ``vigil.<A>.``, and a dead letter planted in A's own DLQ that names tenant B's topic
as its origin is never replayed into B (the replay publisher is A's, prefix-checked)."""
from __future__ import annotations

import uuid

from services.core.bus import Publisher, RetryPolicy, StageRunner, StageSpec
from services.core.bus.runtime import Context
from services.core.errors import PermissionDeniedError, ValidationError, classify
from services.core.events import Event, header_value
from services.core.tenancy import Tenant, topic_name, topic_prefix
from services.core.topics import ensure_tenant_topics
from tests.fixtures.control import count_records, dead_letter, probe_event
from vigil.v1 import control_pb2 as pb


async def _noop(event, ctx) -> None:
    return None


async def test_stage_runtime_stays_inside_its_tenant(stack, tenant_id, adversary):
    other = "o" + tenant_id[1:]
    for name, stream in [("runtime: consume another tenant's topic by full name", f"vigil.{other}.ehr-events"),
                         ("runtime: consume with a wildcard stream name", ".*"),
                         ("runtime: consume the broker's offsets topic", "../__consumer_offsets")]:
        runner = StageRunner(stack, tenant_id, StageSpec(name="probe", input_stream=stream, handler=_noop,
                                                         retry=RetryPolicy(quick_attempts=1, retry_backoff_s=())))
        try:
            adversary.check(name, runner.input_topic.startswith(topic_prefix(tenant_id))
                            and runner.input_topic == f"vigil.{tenant_id}.{stream}", runner.input_topic)
        finally:
            await runner.publisher.stop()
    runner = StageRunner(stack, tenant_id, StageSpec(name="probe", input_stream="ehr-events", handler=_noop))
    try:
        own = Event.new("vigil.ehr.resource-changed", source="/t", tenant=tenant_id, key="p1",
                        data={"resourceType": "Patient", "id": "p1", "versionId": "1", "patient": "p1",
                              "action": "create", "origin": "backfill", "lastUpdated": "2024-05-01T10:00:00Z"})
        ctx = Context(runner, own, 1)
        for name, stream in [("runtime: handler emits to another tenant's stream", f"vigil.{other}.findings"),
                             ("runtime: handler emits to another tenant's DLQ", f"vigil.{other}.dlq"),
                             ("runtime: handler emits to a look-alike prefix", f"vigil.{tenant_id}x.findings")]:
            with adversary.attempt(name, PermissionError) as at:
                ctx.emit(stream, own)
            # the stage runtime dead-letters it as a refusal; retrying cannot help
            assert isinstance(classify(at.error), PermissionDeniedError) and not classify(at.error).retryable
        foreign = Event.new("vigil.ehr.resource-changed", source="/t", tenant=other, key="p1", data=own.data)
        with adversary.attempt("runtime: handler emits an event stamped with another tenant", ValidationError):
            ctx.emit("ehr-events", foreign)
        assert ctx.outputs == []
    finally:
        await runner.publisher.stop()


async def test_planted_dead_letter_is_not_replayed_into_another_tenant(stack, control, provision, adversary):
    a, b = await provision(), await provision()
    control.tenants += [a, b]
    await ensure_tenant_topics(stack, Tenant(id=b, partitions=4))
    await dead_letter(stack, a, [probe_event(a, 1)])
    [genuine] = [r for r in await count_records(stack, topic_name(a, "dlq"))
                 if header_value(r.headers, "dlq-stage") == "probe"]
    planted_id = "dlq-" + uuid.uuid4().hex
    headers = [(k, v) for k, v in genuine.headers if k not in ("dlq-id", "dlq-original-topic")]
    headers += [("dlq-id", planted_id.encode()), ("dlq-original-topic", topic_name(b, "ehr-events").encode())]
    publisher = Publisher(stack, a)  # tenant A's own producer writing into its own DLQ
    await publisher.start()
    try:
        await (await publisher.send_raw(topic_name(a, "dlq"), genuine.key, genuine.value, headers))
    finally:
        await publisher.stop()
    await control.app.indexer.sync()
    before = len(await count_records(stack, topic_name(b, "ehr-events")))
    error = None
    async with control.client(control.token(a)) as cc:
        listed = await cc.call("ListDeadLetters", pb.ListDeadLettersRequest(filter=pb.DeadLetterFilter(ids=[planted_id])))
        assert [i.id for i in listed.items] == [planted_id]
        try:
            steps = [s async for s in cc.stream("Replay", pb.ReplayRequest(
                filter=pb.DeadLetterFilter(ids=[planted_id]), rate_per_second=100))]
        except Exception as exc:  # the refusal may surface as an RPC error
            steps, error = [], exc
    after = len(await count_records(stack, topic_name(b, "ehr-events")))
    sent = max((s.sent for s in steps), default=0)
    adversary.check("dlq replay: dead letter planted in A's DLQ naming B's topic as its origin",
                    after == before and sent == 0 and (error is None or isinstance(error, PermissionDeniedError)),
                    f"B's topic {before}->{after} records, sent={sent}, error={type(error).__name__ if error else None}")
