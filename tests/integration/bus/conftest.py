"""Helpers for bus tests: tiny backoffs, event factories, a stage running in the background."""
from __future__ import annotations

import asyncio
import contextlib
import uuid

import pytest

from tests.fixtures.kafka import read_topic  # noqa: F401 (re-exported for the tests here)

from services.core.bus import ConsumerTuning, Publisher, RetryPolicy, StageRunner, StageSpec, ensure_stage_topics
from services.core.events import Event

#: 2 quick tries 10 ms apart, then retry.1 after 0.3 s and retry.2 after 0.6 s: a poison event
#: is tried 2 x (1 + 2) = 6 times within ~1 s.
FAST_RETRY = RetryPolicy(quick_attempts=2, quick_wait_initial_s=0.01, quick_wait_max_s=0.05, retry_backoff_s=(0.3, 0.6))
FAST_TUNING = ConsumerTuning(poll_timeout_ms=100, commit_interval_ms=200, handler_timeout_s=5.0, liveness_stall_s=10.0)


def resource_event(tenant: str, patient: str, n: int) -> Event:
    return Event.new("vigil.ehr.resource-changed", source=f"/test/{tenant}", tenant=tenant, key=patient,
                     id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant}/{patient}/{n}")),
                     data={"resourceType": "DocumentReference", "id": f"doc-{patient}-{n}", "versionId": str(n),
                           "patient": patient, "action": "create", "origin": "backfill",
                           "lastUpdated": "2024-05-01T10:00:00Z"})


def findings_for(event: Event, ctx) -> Event:
    return ctx.child("vigil.extraction.findings", {
        "document": {"id": event.data["id"], "versionId": event.data["versionId"]}, "patient": event.key,
        "engine": "rules", "engineVersion": "test-1", "promptHash": None, "noteTime": None,
        "reviewRequired": False, "findings": []})


def spec(name: str, handler, **kw) -> StageSpec:
    return StageSpec(name=name, input_stream="ehr-events", handler=handler, retry=kw.pop("retry", FAST_RETRY),
                     tuning=kw.pop("tuning", FAST_TUNING), **kw)


async def publish(settings, tenant_id: str, events: list[Event], stream: str = "ehr-events") -> None:
    async with Publisher(settings, tenant_id) as pub:
        await pub.publish_many(stream, events)




@contextlib.asynccontextmanager
async def running(settings, tenant_id: str, stage_spec: StageSpec):
    runner = StageRunner(settings, tenant_id, stage_spec)
    await runner.start()
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        yield runner
    finally:
        stop.set()
        await task
        await runner.stop()


@pytest.fixture
async def topics(stack, tenant):
    """Create the tenant's streams; tests add their stage's retry topics via ``ensure_stage_topics``."""
    async def make(*specs):
        await ensure_stage_topics(stack, tenant, specs)
    return make
