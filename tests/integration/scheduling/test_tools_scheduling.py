"""The tools service's scheduling RPCs directly over loopback gRPC: validation, tenant from the
credential, slot holds between conversations, idempotency keys, and no message text at rest."""
from __future__ import annotations

import asyncpg
import pytest

from services.core.errors import NotFoundError, PermissionDeniedError, ValidationError
from services.scheduling.toolbox import Toolbox
from tests.integration.scheduling.conftest import slot_time
from vigil.v1 import tools_pb2


@pytest.fixture
def tools(sched) -> Toolbox:
    return Toolbox(sched.agents[0][2], sched.tenant)


async def test_bad_requests_are_refused_clearly(sched, tools):
    cases = [
        ("FindSlots", tools_pb2.FindSlotsRequest(start="2030-03-05T00:00:00Z", end="2030-03-04T00:00:00Z"), "bad_window"),
        ("FindSlots", tools_pb2.FindSlotsRequest(start="tomorrow", end="2030-03-04T00:00:00Z"), "bad_start"),
        ("FindSlots", tools_pb2.FindSlotsRequest(start="2030-03-04T00:00:00Z", end="2030-03-05T00:00:00Z",
                                                 part_of_day="night"), "bad_part_of_day"),
        ("Book", tools_pb2.BookRequest(idempotency_key="k1", slot_id="../x", patient_id="p"), "bad_slot_id"),
        ("Book", tools_pb2.BookRequest(idempotency_key="", slot_id="1", patient_id="p"), "bad_idempotency_key"),
        ("SendMessage", tools_pb2.SendMessageRequest(idempotency_key="k2", patient_id="p", text="  "), "bad_text"),
        ("CreateStaffTask", tools_pb2.CreateStaffTaskRequest(idempotency_key="k3", patient_id="p", reason="x"),
         "bad_reason"),
        ("HoldSlot", tools_pb2.HoldSlotRequest(slot_id="1", holder=""), "bad_holder"),
    ]
    for method, request, code in cases:
        with pytest.raises(ValidationError) as caught:
            await tools.clients.call("tools", sched.tenant, method, request)
        assert caught.value.code == code, method
    with pytest.raises(NotFoundError):
        await tools.action("never-used")


async def test_a_request_naming_another_tenant_is_denied(sched, tools):
    with pytest.raises(PermissionDeniedError):
        await tools.clients.call("tools", sched.tenant, "ListAppointments",
                                 tools_pb2.ListAppointmentsRequest(patient_id="p", tenant=sched.tenant + "x"))


async def test_holds_keep_other_conversations_away(sched, tools):
    patient = await sched.patient()
    slot = sched.grid[slot_time(6, 9)]
    window = dict(start="2030-03-06T00:00:00Z", end="2030-03-07T00:00:00Z", part_of_day="morning")
    assert await tools.hold(slot, "conv-a", 60)
    assert not await tools.hold(slot, "conv-b", 60)
    assert await tools.hold(slot, "conv-a", 60)                              # the holder may extend
    seen_by_a = [s.slot_id for s in await tools.find_slots(holder="conv-a", **window)]
    seen_by_b = [s.slot_id for s in await tools.find_slots(holder="conv-b", **window)]
    assert slot in seen_by_a and slot not in seen_by_b and len(seen_by_a) == len(seen_by_b) + 1
    refused = await tools.book("hold-b", slot, patient, "conv-b")
    assert (refused.status, refused.reason) == ("conflict", "held_by_other")
    await tools.release(slot, "conv-b")                                      # not b's to release
    assert not await tools.hold(slot, "conv-b", 60)
    booked = await tools.book("hold-a", slot, patient, "conv-a")
    assert booked.status == "verified" and booked.start == "2030-03-06T09:00:00Z"
    assert await sched.slot_status(slot) == "busy"
    assert not booked.replayed and (await tools.book("hold-a", slot, patient, "conv-a")).replayed


async def test_idempotency_keys(sched, tools, stack):
    patient = await sched.patient()
    first = await tools.send("msg-1", patient, "Hello from the clinic", "conv-1")
    again = await tools.send("msg-1", patient, "Hello from the clinic", "conv-1")
    assert again.replayed and again.resource_ref == first.resource_ref
    assert len(await sched.messages_to(patient)) == 1
    with pytest.raises(ValidationError) as caught:
        await tools.send("msg-1", patient, "A different text", "conv-1")
    assert caught.value.code == "idempotency_key_reused"
    task = await tools.staff_task("task-1", patient, "patient-request", "routine", [first.resource_ref.split("/")[1]],
                                  "conv-1")
    assert (await tools.staff_task("task-1", patient, "patient-request", "routine",
                                   [first.resource_ref.split("/")[1]], "conv-1")).resource_ref == task.resource_ref
    assert len(await sched.tasks(patient)) == 1
    conn = await asyncpg.connect(stack.postgres_dsn)
    try:
        rows = await conn.fetch("SELECT kind, status, request::text AS request, response::text AS response "
                                "FROM vigil_scheduling_actions WHERE tenant = $1 ORDER BY created_at", sched.tenant)
    finally:
        await conn.close()
    assert [(r["kind"], r["status"]) for r in rows] == [("message", "verified"), ("staff-task", "verified")]
    assert not any("Hello" in r["request"] + r["response"] for r in rows)    # no message text at rest


async def test_cancel_checks_the_patient(sched, tools):
    patient, stranger = await sched.patient(), await sched.patient("Stranger")
    booked = await tools.book("own", sched.grid[slot_time(7, 9)], patient, "")
    appointment = booked.resource_ref.split("/")[1]
    refused = await tools.cancel("not-yours", appointment, stranger)
    assert (refused.status, refused.reason) == ("failed", "not_this_patient")
    assert [a["status"] for a in await sched.appointments(patient)] == ["booked"]
    cancelled = await tools.cancel("yours", appointment, patient)
    assert cancelled.status == "verified" and cancelled.start == "2030-03-07T09:00:00Z"
    assert await sched.slot_status(sched.grid[slot_time(7, 9)]) == "free"
    listed = await tools.appointments(patient)
    assert [(a.appointment_id, a.status) for a in listed] == [(appointment, "cancelled")]
