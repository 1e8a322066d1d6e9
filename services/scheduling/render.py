"""Every text the agent sends, in the conversation's language (``services.scheduling.lang``).
Statements about an appointment are rendered only from a verified ledger record (``ActionResult``
from the tools service: status verified, start and end read back from the EHR) or from the
patient's appointments as read from the EHR in this turn, never from an engine's words."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from services.scheduling import lang
from vigil.v1 import tools_pb2

_EN = lang.get("en").texts
SAFE_REPLY = _EN["safe_reply"]
URGENT_REPLY = _EN["urgent_reply"]
REDIRECT = _EN["redirect"]
NOT_UNDERSTOOD = _EN["not_understood"]
HANDOFF = _EN["handoff"]
NO_APPOINTMENT = _EN["no_appointment"]
STAFF_REQUESTED = _EN["staff_requested"]
SAFETY_HANDOFF = _EN["safety_handoff"]


def say(key: str, language: str = "en", **values) -> str:
    """The fixed text ``key`` in ``language`` with ``values`` filled in."""
    return lang.get(language).texts[key].format(**values)


def when(iso: str, tz: ZoneInfo, language: str = "en") -> str:
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(tz)
    spec = lang.get(language)
    return spec.when_format.format(weekday=spec.weekdays[moment.weekday()], day=moment.day,
                                   month=spec.months[moment.month - 1], time=f"{moment:%H:%M}")


def when_bare(iso: str, tz: ZoneInfo, language: str = "en") -> str:
    """``when`` without a leading article ("martes 5 de marzo a las 15:00" after "del")."""
    text = when(iso, tz, language)
    return text[3:] if language == "es" and text.startswith("el ") else text


def window(when, language: str = "en") -> str:
    """A searched window (``dates.When``) in the patient's words: "on Tuesday 8 December in the
    afternoon", "el martes o el jueves por la mañana"."""
    spec = lang.get(language)
    bits = []
    if when.day:
        bits.append(say("on_day", language, weekday=spec.weekdays[when.day.weekday()], day=when.day.day,
                        month=spec.months[when.day.month - 1]))
    elif when.weekdays:
        bits.append(say("or", language).join(say("on_weekday", language, weekday=spec.weekdays[d])
                                             for d in sorted(when.weekdays)))
    if when.part:
        bits.append(say(f"part_{when.part}", language))
    if when.at:
        bits.append(say("at_time", language, time=f"{when.at:%H:%M}"))
    return " ".join(bits) or say("that_time", language)


def _times(iso: str, tz: ZoneInfo, language: str, prefix: str = "") -> dict:
    return {f"{prefix}when": when(iso, tz, language), f"{prefix}when_bare": when_bare(iso, tz, language)}


def offers(slots: list[dict], tz: ZoneInfo, intro: str, language: str = "en") -> str:
    lines = [intro] + [f"{i}. {when_bare(s['start'], tz, language)}" for i, s in enumerate(slots, start=1)]
    lines.append(say("offers_outro", language))
    return "\n".join(lines)


def ask_confirm(slot: dict, tz: ZoneInfo, language: str = "en") -> str:
    return say("ask_confirm", language, **_times(slot["start"], tz, language))


def ask_cancel(appointment: dict, tz: ZoneInfo, language: str = "en") -> str:
    return say("ask_cancel", language, **_times(appointment["start"], tz, language))


def about(key: str, iso: str, tz: ZoneInfo, language: str = "en", old: str = "") -> str:
    """A fixed text about one appointment time (and, for a move, the old one)."""
    values = _times(iso, tz, language)
    if old:
        values |= {"old": when(old, tz, language), "old_bare": when_bare(old, tz, language)}
    return say(key, language, **values)


def booking_confirmation(result: tools_pb2.ActionResult, tz: ZoneInfo, replaced: tools_pb2.ActionResult | None = None,
                         language: str = "en") -> str:
    """Only for ``result.status == "verified"`` (checked by the caller against the ledger)."""
    text = about("booked", result.start, tz, language)
    if replaced is not None and replaced.status == "verified":
        text += about("replaced", replaced.start, tz, language)
    return text


def cancellation_confirmation(result: tools_pb2.ActionResult, tz: ZoneInfo, language: str = "en") -> str:
    return about("cancelled", result.start, tz, language)


def appointment_status(appointments: list, tz: ZoneInfo, language: str = "en") -> str:
    booked = [a for a in appointments if a.status == "booked"]
    if not booked:
        return say("no_appointment", language)
    sep = say("list_sep", language)
    return say("upcoming", language, list=sep.join(when_bare(a.start, tz, language) for a in booked))


def booking_failed(reason: str, language: str = "en") -> str:
    if reason in ("slot_taken", "held_by_other"):
        return say("taken", language)
    return say("book_failed", language)
