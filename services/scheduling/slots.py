"""Slot search and holding on behalf of a conversation (shared by both engines)."""
from __future__ import annotations

from datetime import datetime, timezone

from services.scheduling import dates
from services.scheduling.engine import HOLD_S, Turn
from services.scheduling.state import Conversation

SEARCH_LIMIT = 50


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def local(iso_text: str, turn: Turn) -> datetime:
    return datetime.fromisoformat(iso_text.replace("Z", "+00:00")).astimezone(turn.tz)


async def search(conversation: Conversation, turn: Turn, when: dates.When | None) -> list[dict]:
    """Free slots matching ``when`` (default: the request's window), earliest first; the request
    owner's schedule first, any practitioner's when the owner has nothing free."""
    start, end = turn.now, turn.window_end(conversation)
    kw: dict = {}
    if when is not None:
        start, end = max(when.start, turn.now), max(when.end, when.start)
        kw = {"weekdays": sorted(when.weekdays), "part_of_day": when.part}
    if end <= start:
        return []
    query = dict(start=iso(start), end=iso(end), time_zone=str(turn.tz.key), service_type=turn.service_type,
                 holder=conversation.id, limit=SEARCH_LIMIT, **kw)
    found = await turn.tools.find_slots(practitioner_id=turn.practitioner, **query)
    if not found and turn.practitioner:          # the owner has no free time: any practitioner
        found = await turn.tools.find_slots(**query)
    out = [{"slot_id": s.slot_id, "start": s.start, "end": s.end,
            "practitioner": next((r.split("/", 1)[1] for r in s.practitioner_refs if "/" in r), "")} for s in found]
    if when is not None:
        out = [s for s in out if dates.matches(when, local(s["start"], turn))]
    return out


async def hold(conversation: Conversation, turn: Turn, slot: dict) -> bool:
    return await turn.tools.hold(slot["slot_id"], conversation.id, HOLD_S)


async def release(conversation: Conversation, turn: Turn) -> None:
    if conversation.selected:
        await turn.tools.release(conversation.selected["slot_id"], conversation.id)
        conversation.selected = None


async def still_free(conversation: Conversation, turn: Turn, slot: dict) -> bool:
    """Re-validation before a slot is proposed: the EHR still lists it free (and no one else holds it)."""
    found = await turn.tools.find_slots(start=slot["start"], end=slot["end"], time_zone=str(turn.tz.key),
                                        practitioner_id=slot.get("practitioner", ""), holder=conversation.id,
                                        limit=SEARCH_LIMIT)
    return any(s.slot_id == slot["slot_id"] for s in found)
