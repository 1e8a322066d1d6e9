"""The LLM tool-calling engine: the tenant's model for scheduling, reached through the inference
service's ``Chat`` (its settings ``scheduling_llm_*``, budget and cost ledger live there), with
function definitions for the scheduling tools. The model chooses tools; this module runs them
through the tools service (the ledger records every side effect) and decides what may be said:

- ``book_slot`` and ``cancel_appointment`` never act: they propose (the slot held and re-validated,
  or the appointment the EHR holds) and the agent asks the patient its own yes/no question; only
  the patient's unambiguous yes, recorded in the ledger, books or cancels (``agent``, ``consent``),
  the same for both engines. While a proposal is asked, the model's own words are not sent;
- model text that claims an action is blocked; with nothing else to say, escalated to staff;
- the model sees the times offered so far with their slot ids, and the patient's language.
"""
from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta

from services.core.agentclients import AgentClients
from services.core.errors import RetryableError, VigilError, classify
from services.core.logging import get_logger
from services.scheduling import actions, prompt, render, slots
from services.scheduling.dates import When
from services.scheduling.engine import Turn
from services.scheduling.guard import claims_action
from services.scheduling.replies import Escalate, Say
from services.scheduling.state import Conversation
from vigil.v1 import inference_pb2

log = get_logger("vigil.scheduling.llm")
#: Model calls per patient message (tool rounds + the final answer).
MAX_ROUNDS = 5
#: Turns of history sent to the model.
HISTORY_TURNS = 20


#: The inference service's name for this agent's model calls (settings ``scheduling_llm_*``).
PURPOSE = "scheduling"
TOOL_DEFINITIONS = [inference_pb2.ToolDefinition(name=t["function"]["name"], description=t["function"]["description"],
                                                 parameters_json=json.dumps(t["function"]["parameters"]))
                    for t in prompt.TOOLS]


def chat_message(message: dict) -> inference_pb2.ChatMessage:
    return inference_pb2.ChatMessage(
        role=message["role"], content=message.get("content") or "", tool_call_id=message.get("tool_call_id", ""),
        tool_calls=[inference_pb2.ToolCall(id=c["id"], name=c["function"]["name"], arguments=c["function"]["arguments"])
                    for c in message.get("tool_calls", ())])


class LlmEngine:
    """One engine for every tenant: each model call is the tenant's own ``inference.Chat``."""

    name = "llm"

    def __init__(self, clients: AgentClients):
        self.clients = clients

    async def _ask(self, turn: Turn, conversation: Conversation, messages: list[dict]):
        request = inference_pb2.ChatRequest(purpose=PURPOSE, conversation_id=conversation.id,
                                            messages=[chat_message(m) for m in messages], tools=TOOL_DEFINITIONS)
        return (await self.clients.call("inference", turn.tools.tenant, "Chat", request)).message

    async def open(self, conversation: Conversation, turn: Turn) -> list:
        found = await slots.search(conversation, turn, None)
        if not found:
            return [Escalate("no-availability", text=render.say("handoff", turn.language))]
        conversation.offers = found[:3]
        conversation.stage = "offering"
        return [Say(render.offers(conversation.offers, turn.tz, render.say("open_intro", turn.language), turn.language))]

    @staticmethod
    def _context(conversation: Conversation, turn: Turn) -> str:
        offered = "; ".join(f"slot_id={s['slot_id']}: {render.when(s['start'], turn.tz)}" for s in conversation.offers)
        appointment = render.when(conversation.appointment["start"], turn.tz) if conversation.appointment else "none"
        return (f"Now: {turn.now:%A %Y-%m-%d %H:%M} ({turn.tz.key}). "
                f"Follow-up wanted within {conversation.context.get('withinDays', 14)} days. "
                f"Patient's language: {turn.language}. Times offered so far: {offered or 'none'}. "
                f"Booked appointment (from the EHR): {appointment}"
                + (f" (appointment_id={conversation.appointment['id']})." if conversation.appointment else "."))

    async def reply(self, conversation: Conversation, text: str, turn: Turn) -> list:
        if conversation.stage in ("confirming", "confirm-cancel"):   # not a yes: the proposal is dropped
            await slots.release(conversation, turn)
            conversation.stage = "offering" if conversation.offers else "idle"
        messages = [{"role": "system", "content": prompt.system_prompt()},
                    {"role": "system", "content": self._context(conversation, turn)},
                    *conversation.history[-HISTORY_TURNS:], {"role": "user", "content": text}]
        state = {"proposal": None, "escalate": None}
        final = ""
        for _ in range(MAX_ROUNDS):
            try:
                message = await self._ask(turn, conversation, messages)
            except Exception as exc:  # the inference call's errors, in our hierarchy (retryable or not)
                err = classify(exc)
                if isinstance(err, RetryableError):
                    raise err from None
                log.warning("scheduling.llm_failed", error_type=type(exc).__name__, error_code=err.code)
                return [Escalate("engine-error", text=render.say("safe_reply", turn.language))]
            calls = list(message.tool_calls)
            if not calls:
                final = message.content or ""
                break
            messages.append({"role": "assistant", "content": message.content or "",
                             "tool_calls": [{"id": c.id, "type": "function",
                                             "function": {"name": c.name, "arguments": c.arguments}} for c in calls]})
            for call in calls:
                result = await self._run(conversation, turn, call.name, call.arguments, state)
                messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)})
        return self._replies(final, state, turn.language)

    def _replies(self, final: str, state: dict, language: str) -> list:
        if state["escalate"]:
            reason = state["escalate"]
            return [Escalate(reason, priority="urgent" if reason == "urgent-symptoms" else "routine",
                             text=render.say("urgent_reply" if reason == "urgent-symptoms" else "staff_requested",
                                             language))]
        if state["proposal"] is not None:          # our own question; the model's words are not sent
            return state["proposal"]
        if final.strip():
            if claims_action(final):
                log.warning("scheduling.claim_blocked")
                return [Escalate("blocked-claim", text=render.say("safe_reply", language))]
            return [Say(final.strip())]
        return [Say(render.say("not_understood", language))]

    async def _run(self, conversation: Conversation, turn: Turn, name: str, raw: str, state: dict) -> dict:
        try:
            args = json.loads(raw or "{}")
            if not isinstance(args, dict):
                raise ValueError
        except ValueError:
            return {"error": "arguments must be a JSON object"}
        try:
            if name == "find_slots":
                return await self._find(conversation, turn, args)
            if name == "book_slot":
                return await self._book(conversation, turn, str(args.get("slot_id", "")), state)
            if name == "cancel_appointment":
                return await self._cancel(conversation, turn, str(args.get("appointment_id", "")), state)
            if name == "list_appointments":
                return {"appointments": [{"appointment_id": a.appointment_id, "status": a.status,
                                          "start": render.when(a.start, turn.tz)}
                                         for a in await turn.tools.appointments(conversation.patient)]}
            if name == "escalate_to_staff":
                state["escalate"] = args.get("reason") if args.get("reason") in (
                    "urgent-symptoms", "patient-request", "unparseable") else "patient-request"
                return {"ok": True}
        except RetryableError:
            raise
        except VigilError as exc:
            return {"error": exc.code}
        return {"error": f"unknown tool {name[:40]}"}

    async def _find(self, conversation: Conversation, turn: Turn, args: dict) -> dict:
        try:
            first, last = date.fromisoformat(args["date_from"]), date.fromisoformat(args["date_to"])
        except (KeyError, TypeError, ValueError):
            return {"error": "date_from and date_to must be YYYY-MM-DD"}
        start = datetime.combine(first, time(0), tzinfo=turn.tz)
        end = datetime.combine(last + timedelta(days=1), time(0), tzinfo=turn.tz)
        when = When(start, end, weekdays={int(d) for d in args.get("weekdays") or [] if 0 <= int(d) <= 6},
                    part=args.get("part_of_day") or "")
        found = (await slots.search(conversation, turn, when))[:3]
        conversation.offers = found
        if found:
            conversation.stage = "offering"
        return {"slots": [{"slot_id": s["slot_id"], "time": render.when(s["start"], turn.tz)} for s in found]}

    async def _book(self, conversation: Conversation, turn: Turn, slot_id: str, state: dict) -> dict:
        slot = next((s for s in conversation.offers if s["slot_id"] == slot_id), None)
        if slot is None:
            return {"status": "error", "reason": "unknown_slot: offer it with find_slots first"}
        proposed, replies = await actions.propose(conversation, turn, slot)
        if not proposed:
            return {"status": "conflict", "reason": "slot_taken"}
        conversation.reschedule = conversation.appointment is not None
        state["proposal"] = replies
        return {"status": "awaiting_patient_yes", "note": "the system asks the patient to confirm; do not claim a booking"}

    async def _cancel(self, conversation: Conversation, turn: Turn, appointment_id: str, state: dict) -> dict:
        if conversation.appointment is None or conversation.appointment["id"] != appointment_id:
            return {"status": "error", "reason": "unknown_appointment"}
        state["proposal"] = await actions.ask_cancel(conversation, turn)
        return {"status": "awaiting_patient_yes", "note": "the system asks the patient to confirm; do not claim a cancellation"}
