"""The steps both engines share: proposing one slot (held and re-validated before the question),
booking it and proposing or making a cancellation, each after the patient's recorded consent
(``consent``). Texts are in the conversation's language; confirmations are ``Confirm`` replies,
rendered by the agent from the ledger."""
from __future__ import annotations

from services.scheduling import render, slots
from services.scheduling.engine import Turn
from services.scheduling.replies import Confirm, Escalate, Say
from services.scheduling.state import Conversation


async def propose(conversation: Conversation, turn: Turn, slot: dict) -> tuple[bool, list]:
    """Hold ``slot`` and check it is still free; then ask the yes/no question. (proposed, replies)"""
    await slots.release(conversation, turn)
    if not await slots.hold(conversation, turn, slot) or not await slots.still_free(conversation, turn, slot):
        await turn.tools.release(slot["slot_id"], conversation.id)
        conversation.offers = [s for s in conversation.offers if s["slot_id"] != slot["slot_id"]]
        return False, [Say(render.booking_failed("held_by_other", turn.language))]
    conversation.selected, conversation.stage, conversation.failed = slot, "confirming", 0
    return True, [Say(render.ask_confirm(slot, turn.tz, turn.language))]


async def book(conversation: Conversation, turn: Turn) -> tuple[str, list]:
    """The selected slot, after the consent the caller recorded. (status, replies)"""
    slot = conversation.selected
    old = conversation.appointment if conversation.reschedule else None
    result = await turn.tools.book(f"{turn.key}:book", slot["slot_id"], conversation.patient, conversation.id,
                                   replaces=old["id"] if old else "",
                                   description="reschedule" if old else "patient-request")
    conversation.selected, conversation.stage = None, "idle"
    if result.status == "conflict":
        conversation.offers = [s for s in conversation.offers if s["slot_id"] != slot["slot_id"]]
        return "conflict", [Say(render.booking_failed(result.reason, turn.language))]
    if result.status != "verified":
        return result.status, [Escalate("booking-unverified", priority="urgent",
                                        text=render.booking_failed(result.reason, turn.language))]
    conversation.appointment = {"id": result.resource_ref.split("/", 1)[1], "start": result.start,
                                "end": result.end, "slot_id": result.slot_id}
    conversation.offers, conversation.reschedule, conversation.failed = [], False, 0
    if old is None:
        return "verified", [Confirm("booked", (result.idempotency_key,))]
    cancelled = await turn.tools.cancel(f"{turn.key}:cancel", old["id"], conversation.patient)
    if cancelled.status != "verified":
        return "verified", [Confirm("booked", (result.idempotency_key,)),
                            Escalate("booking-unverified", priority="urgent", text=render.say("release_failed", turn.language))]
    return "verified", [Confirm("rescheduled", (result.idempotency_key, cancelled.idempotency_key))]


async def ask_cancel(conversation: Conversation, turn: Turn) -> list:
    """Propose cancelling the appointment the EHR holds (read this turn)."""
    await slots.release(conversation, turn)
    if conversation.appointment is None:
        conversation.stage = "idle"
        return [Say(render.say("no_appointment", turn.language))]
    conversation.stage = "confirm-cancel"
    return [Say(render.ask_cancel(conversation.appointment, turn.tz, turn.language))]


async def cancel(conversation: Conversation, turn: Turn) -> list:
    """The proposed cancellation, after the consent the caller recorded."""
    result = await turn.tools.cancel(f"{turn.key}:cancel", conversation.appointment["id"], conversation.patient)
    conversation.stage = "idle"
    if result.status != "verified":
        return [Escalate("booking-unverified", priority="urgent", text=render.say("safe_reply", turn.language))]
    conversation.appointment = None
    return [Confirm("cancelled", (result.idempotency_key,))]
