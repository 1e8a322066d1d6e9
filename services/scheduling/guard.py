"""The structural guarantee. A reply that confirms a booking, cancellation or change is rendered
here from the action ledger (``GetAction``: status verified, time as read back from the EHR),
never from an engine's text; free text that claims such an action is blocked."""
from __future__ import annotations

import re
from zoneinfo import ZoneInfo

from services.core.errors import NotFoundError
from services.scheduling import lang, render
from services.scheduling.replies import Confirm
from services.scheduling.toolbox import Toolbox

#: Words that claim a completed action (English and Spanish). Free text containing one is not sent.
CLAIM = re.compile(r"\b(booked|confirmed|confirmation|scheduled|reserved|cancell?ed|rescheduled|all set|"
                   r"see you (on|at)|you'?re in|i'?ve (booked|moved|changed|cancell?ed)|has been (moved|changed)|"
                   r"reservad[oa]s?|confirmad[oa]s?|cancelad[oa]s?|anulad[oa]s?|agendad[oa]s?|programad[oa]s?|"
                   r"ya tiene (su|la) cita|le (he|hemos) (reservado|cambiado|anulado|cancelado)|nos vemos el)\b",
                   re.IGNORECASE)


def claims_action(text: str) -> bool:
    return bool(CLAIM.search(lang.fold(text or "")))


async def render_confirmation(tools: Toolbox, confirm: Confirm, tz: ZoneInfo, language: str = "en") -> str | None:
    """The confirmation text, or None when the ledger does not show every named action verified."""
    results = []
    for key in confirm.keys:
        try:
            result = await tools.action(key)
        except NotFoundError:
            return None
        if result.status != "verified":
            return None
        results.append(result)
    if confirm.kind == "booked" and len(results) == 1 and results[0].kind == "book":
        return render.booking_confirmation(results[0], tz, language=language)
    if confirm.kind == "cancelled" and len(results) == 1 and results[0].kind == "cancel":
        return render.cancellation_confirmation(results[0], tz, language)
    if confirm.kind == "rescheduled" and [r.kind for r in results] == ["book", "cancel"]:
        return render.booking_confirmation(results[0], tz, replaced=results[1], language=language)
    return None
