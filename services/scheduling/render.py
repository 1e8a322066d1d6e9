"""Every text the agent sends. Confirmations are rendered only from a verified ledger record
(``ActionResult`` from the tools service: status verified, start and end read back from the
EHR) or from a fresh read of the patient's appointments, never from an engine's words."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from vigil.v1 import tools_pb2

SAFE_REPLY = ("Thank you for your message. I could not complete that automatically; a member of our clinic team "
              "will review your request and contact you.")
URGENT_REPLY = ("Some of what you describe may need urgent attention. If you have chest pain, trouble breathing or "
                "feel very unwell, call 911 or go to the nearest emergency department now. I have notified our care "
                "team and a nurse will contact you shortly. I will not schedule anything in this conversation.")
REDIRECT = ("I can only help with scheduling here. For other questions, please call the clinic or ask your care "
            "team at your visit.")
NOT_UNDERSTOOD = ("Sorry, I did not understand. Please reply with the number of an option, or a day and time "
                  "(for example \"next Tuesday afternoon\" or \"tomorrow at 3\").")
HANDOFF = "I have asked a member of our clinic team to contact you to find a time."
NO_APPOINTMENT = "I could not find an upcoming appointment for you."
STAFF_REQUESTED = "I have asked a member of our clinic team to contact you."


def when(iso: str, tz: ZoneInfo) -> str:
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(tz)
    return f"{moment:%A} {moment.day} {moment:%B} at {moment:%H:%M}"


def offers(slots: list[dict], tz: ZoneInfo, intro: str) -> str:
    lines = [intro] + [f"{i}. {when(s['start'], tz)}" for i, s in enumerate(slots, start=1)]
    lines.append("Reply with the number of the time that suits you, or tell me another day or time.")
    return "\n".join(lines)


def ask_confirm(slot: dict, tz: ZoneInfo) -> str:
    return f"Shall I book {when(slot['start'], tz)} for you? Please reply yes or no."


def ask_cancel(appointment: dict, tz: ZoneInfo) -> str:
    return f"Do you want me to cancel your appointment on {when(appointment['start'], tz)}? Please reply yes or no."


def booking_confirmation(result: tools_pb2.ActionResult, tz: ZoneInfo, replaced: tools_pb2.ActionResult | None = None) -> str:
    """Only for ``result.status == "verified"`` (checked by the caller against the ledger)."""
    text = f"Your appointment is booked for {when(result.start, tz)}."
    if replaced is not None and replaced.status == "verified":
        text += f" Your previous appointment on {when(replaced.start, tz)} is cancelled."
    return text


def cancellation_confirmation(result: tools_pb2.ActionResult, tz: ZoneInfo) -> str:
    return f"Your appointment on {when(result.start, tz)} is cancelled."


def appointment_status(appointments: list, tz: ZoneInfo) -> str:
    booked = [a for a in appointments if a.status == "booked"]
    if not booked:
        return NO_APPOINTMENT
    return "Your upcoming appointments: " + "; ".join(when(a.start, tz) for a in booked) + "."


def booking_failed(reason: str) -> str:
    if reason in ("slot_taken", "held_by_other"):
        return "Sorry, that time was just taken by someone else."
    return ("Sorry, I could not complete the booking. A member of our clinic team will check and contact you; "
            "please do not rely on that time until they do.")
