"""The scheduling stage on the real broker: a follow-up request on ``scheduling`` opens the
conversation, patient Communications announced on ``ehr-events`` drive the turns, and every
message sent is a ``vigil.scheduling.message`` on ``actions``. A redelivered patient event and the
agent's own Communications coming back as events change nothing."""
from __future__ import annotations

import asyncio
import contextlib
import uuid

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.core.bus import ConsumerTuning, Publisher, RetryPolicy, ensure_stage_topics
from services.core.bus.service import StageHost
from services.core.events import Event, decode
from services.core.tenancy import Tenant, topic_name
from services.scheduling import app as scheduling_app
from tests.integration.scheduling.conftest import slot_time

FAST = dict(retry=RetryPolicy(quick_attempts=2, quick_wait_initial_s=0.01, quick_wait_max_s=0.05,
                              retry_backoff_s=(0.3, 0.6)),
            tuning=ConsumerTuning(poll_timeout_ms=100, commit_interval_ms=200, handler_timeout_s=20.0, liveness_stall_s=30.0))


async def read_events(settings, topic: str, want: int, timeout: float = 30.0) -> list[Event]:
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **settings.kafka.client_kwargs())
    await consumer.start()
    partitions = [TopicPartition(topic, p) for p in range(4)]
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    got: list = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(got) < want and asyncio.get_running_loop().time() < deadline:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                got.extend(batch)
    finally:
        await consumer.stop()
    return [decode(m.key, m.value, m.headers) for m in got]


def changed(tenant: str, communication: str, version: str, patient: str) -> Event:
    return Event.new("vigil.ehr.resource-changed", source=f"/test/{tenant}", tenant=tenant, key=patient,
                     id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant}/Communication/{communication}/{version}")),
                     data={"resourceType": "Communication", "id": communication, "versionId": version,
                           "patient": patient, "action": "create", "origin": "subscription",
                           "lastUpdated": "2030-03-04T08:00:00Z"})


@contextlib.asynccontextmanager
async def running(sched):
    specs = scheduling_app.specs(sched.agent, **FAST)
    await ensure_stage_topics(sched.stack, Tenant(id=sched.tenant), specs)
    host = StageHost(sched.settings, specs, port=0, host="127.0.0.1", tenants=[sched.tenant])
    await host.start()
    stop = asyncio.Event()
    task = asyncio.create_task(host.run(stop))
    try:
        yield host
    finally:
        stop.set()
        await task
        await host.stop()


async def test_followup_request_to_booking_through_the_broker(sched):
    patient = await sched.patient()
    request = Event.new("vigil.triage.followup-request", source="/test", tenant=sched.tenant, key=patient,
                        data={"decisionId": "d-1", "patient": patient, "category": "colitis", "grade": 2,
                              "withinDays": 7, "owner": f"Practitioner/{sched.doctor}"})
    actions = topic_name(sched.tenant, "actions")
    async with running(sched):
        async with Publisher(sched.stack, sched.tenant) as pub:
            await pub.publish_many("scheduling", [request, request])          # delivered twice
            opened = await read_events(sched.stack, actions, 1)
            assert len(opened) == 1 and opened[0].type == "vigil.scheduling.message"
            reference = opened[0].data["text"]["reference"]
            first = await sched.ehr.client.read("Communication", reference.split("/")[1])
            assert "1. Monday 4 March at 09:00" in first["payload"][0]["contentString"]
            # the agent's own message announced on ehr-events: not from the patient, ignored
            await pub.publish_many("ehr-events", [changed(sched.tenant, first["id"], first["meta"]["versionId"],
                                                          patient)])
            for words, total in (("2", 2), ("yes", 3)):
                communication, version = await sched.write_message(patient, words)
                event = changed(sched.tenant, communication, version, patient)
                await pub.publish_many("ehr-events", [event, event])          # each delivered twice
                got = await read_events(sched.stack, actions, total)
                assert len(got) == total
        await asyncio.sleep(1.0)
        got = await read_events(sched.stack, actions, 4, timeout=2.0)
    assert len(got) == 3
    assert {e.data["conversationId"] for e in got} == {opened[0].data["conversationId"]}
    assert all(e.data["patient"] == patient and set(e.data) == {"conversationId", "patient", "text"} for e in got)
    last = await sched.ehr.client.read("Communication", got[-1].data["text"]["reference"].split("/")[1])
    assert last["payload"][0]["contentString"] == "Your appointment is booked for Monday 4 March at 10:00."
    booked = await sched.booked(patient)
    assert [a["slot"] for a in booked] == [[{"reference": f"Slot/{sched.grid[slot_time(4, 10)]}"}]]
    assert {p["actor"]["reference"] for p in booked[0]["participant"]} == {f"Patient/{patient}",
                                                                           f"Practitioner/{sched.doctor}"}


async def test_a_staff_cancellation_announced_on_ehr_events_is_told_once(sched):
    """The appointment subscription's event (ingest publishes it on ``ehr-events``) reaches the
    conversation: the patient hears of the clinic's cancellation once, however often it arrives."""
    from tests.integration.scheduling.corpus import staff_action

    patient = await sched.patient()
    await sched.open(patient)
    await sched.say(patient, "1")
    await sched.say(patient, "yes")
    cancelled = await staff_action(sched, patient, "cancel_appointment", [])
    event = Event.new("vigil.ehr.resource-changed", source=f"/test/{sched.tenant}", tenant=sched.tenant, key=patient,
                      id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{sched.tenant}/Appointment/{cancelled['id']}")),
                      data={"resourceType": "Appointment", "id": cancelled["id"],
                            "versionId": cancelled["meta"]["versionId"], "patient": patient, "action": "update",
                            "origin": "subscription", "lastUpdated": "2030-03-04T08:00:00Z"})
    actions = topic_name(sched.tenant, "actions")
    async with running(sched):
        async with Publisher(sched.stack, sched.tenant) as pub:
            await pub.publish_many("ehr-events", [event, event])
            got = await read_events(sched.stack, actions, 1)
        await asyncio.sleep(1.0)
        got = await read_events(sched.stack, actions, 2, timeout=2.0)
    assert len(got) == 1
    told = await sched.ehr.client.read("Communication", got[0].data["text"]["reference"].split("/")[1])
    assert told["payload"][0]["contentString"].startswith(
        "Update from the clinic: your appointment on Monday 4 March at 09:00 has been cancelled by the clinic.")
