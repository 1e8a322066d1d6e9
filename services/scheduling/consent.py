"""The patient's consent, in the action ledger before the action it allows.

A booking, cancellation or reschedule runs only after an unambiguous yes (``intents.Reading.answer``)
to the one proposal the conversation holds (a held, re-validated slot, or one appointment to
cancel). The yes is recorded first, kind ``consent``, key ``<conversation>:<message>:consent``:
the patient's Communication (reference and sha256, never its text), the message it answered,
and what it agreed to (action, slot, start, appointment). The action's own key shares the
prefix, so the ledger links the two. The ledger is the tools service's: the consent is written
through its ``RecordConsent`` RPC, like every other scheduling action."""
from __future__ import annotations

import hashlib

from vigil.v1 import tools_pb2

ACTIONS = ("book", "reschedule", "cancel")


class ConsentLedger:
    def __init__(self, clients):
        self.clients = clients  # services.core.agentclients.AgentClients

    async def record(self, tenant: str, key: str, *, conversation: str, reply: str, reply_text: str, asked: str,
                     action: str, slot: str = "", start: str = "", appointment: str = "") -> dict:
        if action not in ACTIONS:
            raise ValueError(f"consent action must be one of {ACTIONS}")
        result = await self.clients.call("tools", tenant, "RecordConsent", tools_pb2.RecordConsentRequest(
            idempotency_key=key, conversation_id=conversation, reply_ref=reply, asked_ref=asked, action=action,
            slot_id=slot, start=start, appointment_id=appointment,
            reply_sha256=hashlib.sha256(reply_text.encode()).hexdigest()))
        return {"idempotency_key": result.idempotency_key, "kind": result.kind, "status": result.status,
                "slot_id": result.slot_id, "start": result.start, "resource_ref": result.resource_ref,
                "reason": result.reason}
