"""The EHR is the truth: the conversation's appointment is re-read from the EHR on every turn and
on every change the appointment subscription reports (``SchedulingAgent.on_appointment``).

``sync`` reads the patient's upcoming appointments (``ListAppointments``) and compares them with
what the conversation last knew. A change the conversation did not make (the clinic cancelled,
moved or marked it a no-show, or removed it) updates the conversation - its appointment, and any
pending proposal that depended on it - and yields one notice, rendered from the Appointment just
read. Notices are told once: their markers are kept in ``Conversation.notified``. The appointment
the conversation holds afterwards is the earliest one the EHR has as booked (or none)."""
from __future__ import annotations

from services.scheduling import render, slots
from services.scheduling.dates import same_instant
from services.scheduling.engine import Turn
from services.scheduling.state import Conversation

NOTIFIED_MAX = 50


def _as_state(info) -> dict:
    return {"id": info.appointment_id, "start": info.start, "end": info.end, "slot_id": info.slot_id}


def _tell(conversation: Conversation, marker: str, text: str, out: list[str]) -> None:
    if marker not in conversation.notified:
        conversation.notified = (conversation.notified + [marker])[-NOTIFIED_MAX:]
        out.append(text)


async def sync(conversation: Conversation, turn: Turn) -> list[str]:
    """Notices of staff-side changes (texts, in the conversation's language), each at most once."""
    found = await turn.tools.appointments(conversation.patient)
    booked = [a for a in found if a.status == "booked"]
    turn.booked = len(booked)
    known, language, tz = conversation.appointment, turn.language, turn.tz
    notices: list[str] = []
    if known:
        current = next((a for a in found if a.appointment_id == known["id"]), None)
        others = [a for a in booked if a.appointment_id != known["id"]]
        if current is None and not others:
            _tell(conversation, f"{known['id']}:removed", render.say("staff_removed", language), notices)
        elif current is not None and current.status == "noshow":
            _tell(conversation, f"{known['id']}:noshow", render.about("staff_noshow", current.start, tz, language), notices)
        elif current is None or current.status != "booked":
            if others:                                   # cancelled and replaced by another booking: a move
                _tell(conversation, f"{known['id']}:moved:{others[0].appointment_id}",
                      render.about("staff_moved", others[0].start, tz, language,
                                   old=current.start if current is not None else known["start"]), notices)
            else:
                _tell(conversation, f"{known['id']}:{current.status}",
                      render.about("staff_cancelled", current.start, tz, language), notices)
        elif not same_instant(current.start, known["start"]):
            _tell(conversation, f"{known['id']}:moved:{current.start}",
                  render.about("staff_moved", current.start, tz, language, old=known["start"]), notices)
    conversation.appointment = _as_state(booked[0]) if booked else None
    changed = known is not None and (conversation.appointment is None or conversation.appointment["id"] != known["id"]
                                     or not same_instant(conversation.appointment["start"], known["start"]))
    if changed:
        if conversation.stage == "confirm-cancel":       # the proposal was about the old appointment
            conversation.stage = "idle"
        if conversation.appointment is None:
            conversation.reschedule = False
        if notices and conversation.appointment is None and conversation.stage == "idle":
            notices[-1] += " " + render.say("offer_new_time", language)
    return notices


async def forget_proposal(conversation: Conversation, turn: Turn) -> None:
    """Drop a pending proposal (the conversation is handed to staff)."""
    await slots.release(conversation, turn)
    if conversation.stage in ("confirming", "confirm-cancel"):
        conversation.stage = "idle"
