"""The interface both engines implement, and what a turn gives them."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from services.scheduling.state import Conversation
from services.scheduling.toolbox import Toolbox

#: Slots held while the patient decides: 10 minutes.
HOLD_S = 600
#: Times offered in one message.
OFFERED = 3
#: Default search horizon when neither the request nor the patient names one.
DEFAULT_DAYS = 14
#: Failed turns (not understood, nothing found) before a human takes over: the second one.
MAX_FAILED = 2


@dataclass
class Turn:
    tools: Toolbox
    now: datetime                 # aware, in the clinic's zone
    tz: ZoneInfo
    key: str                      # idempotency key prefix of this turn: "<conversation>:<message>"
    practitioner: str = ""        # Practitioner id to book with ("" = any)
    service_type: str = ""
    language: str = "en"          # the language replies are written in
    reading: object = None        # intents.Reading of the patient's message (None when the clinic opens)
    booked: int = 0               # the patient's booked appointments, as read from the EHR this turn

    def window_end(self, conversation: Conversation) -> datetime:
        days = conversation.context.get("withinDays") or DEFAULT_DAYS
        return self.now + timedelta(days=max(1, int(days)))


class Engine(Protocol):
    name: str

    async def open(self, conversation: Conversation, turn: Turn) -> list:
        """The first message of a conversation the clinic starts (a follow-up request)."""

    async def reply(self, conversation: Conversation, text: str, turn: Turn) -> list:
        """One patient message -> replies (``services.scheduling.replies``)."""
