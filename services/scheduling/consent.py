"""The patient's consent, in the action ledger before the action it allows.

A booking, cancellation or reschedule runs only after an unambiguous yes (``intents.Reading.answer``)
to the one proposal the conversation holds (a held, re-validated slot, or one appointment to
cancel). The yes is recorded first, kind ``consent``, key ``<conversation>:<message>:consent``:
the patient's Communication (reference and sha256, never its text), the message it answered,
and what it agreed to (action, slot, start, appointment). The action's own key shares the
prefix, so the ledger links the two."""
from __future__ import annotations

import hashlib

from services.tools.action_ledger import ActionLedger

ACTIONS = ("book", "reschedule", "cancel")


class ConsentLedger:
    def __init__(self, ledger: ActionLedger):
        self.ledger = ledger

    async def record(self, tenant: str, key: str, *, conversation: str, reply: str, reply_text: str, asked: str,
                     action: str, slot: str = "", start: str = "", appointment: str = "") -> dict:
        if action not in ACTIONS:
            raise ValueError(f"consent action must be one of {ACTIONS}")
        request = {"conversation": conversation, "reply": reply, "asked": asked, "action": action, "slot": slot,
                   "start": start, "appointment": appointment,
                   "reply_sha256": hashlib.sha256(reply_text.encode()).hexdigest()}

        async def perform(resumed: bool) -> dict:
            return {"idempotency_key": key, "kind": "consent", "status": "verified", "slot_id": slot, "start": start,
                    "resource_ref": f"Appointment/{appointment}" if appointment else "", "reason": action}

        response, _ = await self.ledger.run(tenant, key, "consent", request, perform)
        return response
