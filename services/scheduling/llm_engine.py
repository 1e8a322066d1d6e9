"""The LLM tool-calling engine: an OpenAI-compatible model (per tenant, ``services.core.llmclient``)
with function definitions for the scheduling tools. The model chooses tools; this module runs them
through the tools service (the ledger records every side effect) and decides what may be said:

- a verified booking / cancellation becomes a ``Confirm`` (rendered from the ledger by the agent);
- model text that claims an action this turn did not verify is blocked and escalated to staff;
- an unverified booking (EHR answered but the read-back failed) is escalated, never confirmed.
"""
from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta

from services.core.errors import RetryableError, VigilError, classify
from services.core.logging import get_logger
from services.scheduling import prompt, render, slots
from services.scheduling.dates import When
from services.scheduling.engine import Turn
from services.scheduling.guard import claims_action
from services.scheduling.replies import Confirm, Escalate, Say
from services.scheduling.state import Conversation

log = get_logger("vigil.scheduling.llm")
#: Model calls per patient message (tool rounds + the final answer).
MAX_ROUNDS = 5
#: Turns of history sent to the model.
HISTORY_TURNS = 20


class LlmEngine:
    name = "llm"

    def __init__(self, client, model: str):
        self.client, self.model = client, model

    async def open(self, conversation: Conversation, turn: Turn) -> list:
        found = await slots.search(conversation, turn, None)
        if not found:
            return [Escalate("no-availability", text=render.HANDOFF)]
        conversation.offers = found[:3]
        return [Say(render.offers(conversation.offers, turn.tz,
                                  "Your care team would like to see you for a follow-up visit. These times are available:"))]

    async def reply(self, conversation: Conversation, text: str, turn: Turn) -> list:
        messages = [{"role": "system", "content": prompt.system_prompt()},
                    {"role": "system", "content": f"Now: {turn.now:%A %Y-%m-%d %H:%M} ({turn.tz.key}). "
                                                  f"Follow-up wanted within {conversation.context.get('withinDays', 14)} days."},
                    *conversation.history[-HISTORY_TURNS:], {"role": "user", "content": text}]
        state = {"book": None, "cancel": None, "unverified": None, "escalate": None, "n": 0}
        final = ""
        for _ in range(MAX_ROUNDS):
            try:
                completion = await self.client.chat.completions.create(model=self.model, messages=messages,
                                                                        tools=prompt.TOOLS)
            except Exception as exc:  # the openai client's errors -> our hierarchy (retryable or not)
                err = classify(exc)
                if isinstance(err, RetryableError):
                    raise err from None
                log.warning("scheduling.llm_failed", error_type=type(exc).__name__)
                return [Escalate("engine-error", text=render.SAFE_REPLY)]
            message = completion.choices[0].message
            calls = message.tool_calls or []
            if not calls:
                final = message.content or ""
                break
            messages.append({"role": "assistant", "content": message.content or "",
                             "tool_calls": [{"id": c.id, "type": "function",
                                             "function": {"name": c.function.name,
                                                          "arguments": c.function.arguments}} for c in calls]})
            for call in calls:
                result = await self._run(conversation, turn, call.function.name, call.function.arguments, state)
                messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)})
        return self._replies(final, state)

    def _replies(self, final: str, state: dict) -> list:
        out: list = []
        if state["escalate"]:
            reason = state["escalate"]
            return [Escalate(reason, priority="urgent" if reason == "urgent-symptoms" else "routine",
                             text=render.URGENT_REPLY if reason == "urgent-symptoms" else render.STAFF_REQUESTED)]
        book, cancel = state["book"], state["cancel"]
        if book and cancel:
            out.append(Confirm("rescheduled", (book, cancel)))
        elif book:
            out.append(Confirm("booked", (book,)))
        elif cancel:
            out.append(Confirm("cancelled", (cancel,)))
        if state["unverified"]:
            out.append(Escalate("booking-unverified", priority="urgent", text=render.booking_failed("not_read_back")))
        if final.strip():
            if claims_action(final):
                if not out:                    # a claim with nothing verified behind it
                    log.warning("scheduling.claim_blocked")
                    out.append(Escalate("blocked-claim", text=render.SAFE_REPLY))
                # with a verified action, the ledger-rendered confirmation replaces the model's words
            else:
                out.append(Say(final.strip()))
        return out or [Say(render.NOT_UNDERSTOOD)]

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
        return {"slots": [{"slot_id": s["slot_id"], "time": render.when(s["start"], turn.tz)} for s in found]}

    async def _book(self, conversation: Conversation, turn: Turn, slot_id: str, state: dict) -> dict:
        state["n"] += 1
        if not await turn.tools.hold(slot_id, conversation.id, 600):
            return {"status": "conflict", "reason": "slot_taken"}
        result = await turn.tools.book(f"{turn.key}:book:{state['n']}", slot_id, conversation.patient, conversation.id,
                                       description="patient-request")
        if result.status == "verified":
            state["book"] = result.idempotency_key
            conversation.appointment = {"id": result.resource_ref.split("/", 1)[1], "start": result.start,
                                        "end": result.end, "slot_id": result.slot_id}
            return {"status": "booked"}
        await turn.tools.release(slot_id, conversation.id)
        if result.status == "unverified":
            state["unverified"] = result.idempotency_key
        return {"status": result.status, "reason": result.reason}

    async def _cancel(self, conversation: Conversation, turn: Turn, appointment_id: str, state: dict) -> dict:
        state["n"] += 1
        result = await turn.tools.cancel(f"{turn.key}:cancel:{state['n']}", appointment_id, conversation.patient)
        if result.status == "verified":
            state["cancel"] = result.idempotency_key
            if conversation.appointment and conversation.appointment.get("id") == appointment_id:
                conversation.appointment = None
        return {"status": result.status, "reason": result.reason}
