"""The deterministic dialogue manager (default engine, offline): offers times, understands dates
and times, choices by number, yes/no, change of mind before and after booking, cancel and
reschedule; unrelated questions get a safe redirect; repeated failures go to a human."""
from __future__ import annotations

from services.scheduling import dates, intents, render, slots
from services.scheduling.engine import MAX_FAILED, OFFERED, Turn
from services.scheduling.replies import Confirm, Escalate, Say, Status
from services.scheduling.state import Conversation

OPEN_INTRO = "Your care team would like to see you for a follow-up visit. These times are available:"
PATIENT_INTRO = "These times are available:"


class DialogueEngine:
    name = "dialogue"

    async def open(self, conversation: Conversation, turn: Turn) -> list:
        found = await slots.search(conversation, turn, None)
        return self._offer(conversation, turn, found, OPEN_INTRO) if found else \
            [Escalate("no-availability", text=render.HANDOFF)]

    async def reply(self, conversation: Conversation, text: str, turn: Turn) -> list:
        if intents.STAFF.search(text):
            return [Escalate("patient-request", text=render.STAFF_REQUESTED)]
        if intents.STATUS.search(text):
            return [Status()]
        when = dates.parse(text, turn.now)
        choice = intents.ordinal(text)
        yes, no = bool(intents.YES.search(text)), bool(intents.NO.search(text))
        cancel, move = bool(intents.CANCEL.search(text)), bool(intents.RESCHEDULE.search(text))

        if conversation.stage == "confirm-cancel":
            if yes:
                return await self._cancel(conversation, turn)
            conversation.stage = "idle"
            if no and when is None and not move:
                return [Say(f"All right, I will leave your appointment on "
                            f"{render.when(conversation.appointment['start'], turn.tz)} as it is.")]
        if cancel and not move and when is None:
            return await self._ask_cancel(conversation, turn)
        if move or (conversation.appointment and when is not None and conversation.stage != "confirming"):
            if conversation.appointment is None:
                await self._load_appointment(conversation, turn)
            conversation.reschedule = conversation.appointment is not None
            await slots.release(conversation, turn)
            return await self._search_and_offer(conversation, turn, when)
        if conversation.stage == "confirming" and conversation.selected:
            if yes and when is None:
                return await self._book(conversation, turn)
            if when is not None or choice is not None or no:
                await slots.release(conversation, turn)
                conversation.stage = "offering"
                if when is None and choice is None:
                    return [Say("No problem. " + render.offers(conversation.offers, turn.tz, "The times I have:")
                                if conversation.offers else "No problem. Which day or time would suit you better?")]
        if choice is not None and conversation.offers:
            index = choice if choice >= 0 else len(conversation.offers) - 1
            if index < len(conversation.offers):
                return await self._select(conversation, turn, conversation.offers[index])
        if when is not None:
            if when.ambiguous:
                return [Say(f"Sorry, I am not sure which date you mean ({when.ambiguous}). Could you tell me the "
                            "weekday and the date, for example \"Tuesday 14 March\"?")]
            offered = [s for s in conversation.offers if dates.matches(when, slots.local(s["start"], turn))]
            if len(offered) == 1 and (when.at or when.day):
                return await self._select(conversation, turn, offered[0])
            return await self._search_and_offer(conversation, turn, when)
        if yes and conversation.stage == "offering" and len(conversation.offers) == 1:
            return await self._select(conversation, turn, conversation.offers[0])
        if (yes or no) and conversation.stage == "offering":
            return [Say("Which day or time would suit you? You can reply with the number of an option.")]
        if intents.is_question(text) and not intents.SCHEDULING_WORDS.search(text):
            return [Say(render.REDIRECT + " " + self._prompt(conversation, turn))]
        return self._failed(conversation)

    # -- steps -------------------------------------------------------------------------------
    def _prompt(self, conversation: Conversation, turn: Turn) -> str:
        if conversation.stage == "confirming" and conversation.selected:
            return render.ask_confirm(conversation.selected, turn.tz)
        if conversation.stage == "offering" and conversation.offers:
            return render.offers(conversation.offers, turn.tz, "The times I can offer:")
        return "Would you like me to find you a time? Tell me a day or time that suits you."

    def _failed(self, conversation: Conversation) -> list:
        conversation.failed += 1
        if conversation.failed >= MAX_FAILED:
            conversation.failed = 0
            return [Escalate("failed-attempts", text=render.HANDOFF)]
        return [Say(render.NOT_UNDERSTOOD)]

    def _offer(self, conversation: Conversation, turn: Turn, found: list[dict], intro: str) -> list:
        conversation.offers = found[:OFFERED]
        conversation.stage = "offering"
        return [Say(render.offers(conversation.offers, turn.tz, intro))]

    async def _search_and_offer(self, conversation: Conversation, turn: Turn, when) -> list:
        if when is not None and when.ambiguous:
            return [Say(f"Sorry, I am not sure which date you mean ({when.ambiguous}). Could you tell me the "
                        "weekday and the date, for example \"Tuesday 14 March\"?")]
        found = await slots.search(conversation, turn, when)
        if when is not None and when.at and len(found) == 1:
            conversation.failed = 0
            return await self._select(conversation, turn, found[0])
        if found:
            conversation.failed = 0
            return self._offer(conversation, turn, found, PATIENT_INTRO)
        failed = self._failed(conversation)
        if isinstance(failed[0], Escalate):
            return failed
        nearby = await slots.search(conversation, turn, None)
        what = when.describe() if when is not None else "in the next days"
        if nearby:
            return [Say(f"Sorry, I have no free time {what}.")] + \
                self._offer(conversation, turn, nearby, "These times are available:")
        return [Say(f"Sorry, I have no free time {what}. Which other day would suit you?")]

    async def _select(self, conversation: Conversation, turn: Turn, slot: dict) -> list:
        await slots.release(conversation, turn)
        if not await slots.hold(conversation, turn, slot):
            conversation.offers = [s for s in conversation.offers if s["slot_id"] != slot["slot_id"]]
            return [Say(render.booking_failed("held_by_other"))] + await self._search_and_offer(conversation, turn, None)
        conversation.selected, conversation.stage, conversation.failed = slot, "confirming", 0
        return [Say(render.ask_confirm(slot, turn.tz))]

    async def _book(self, conversation: Conversation, turn: Turn) -> list:
        slot = conversation.selected
        old = conversation.appointment if conversation.reschedule else None
        result = await turn.tools.book(f"{turn.key}:book", slot["slot_id"], conversation.patient, conversation.id,
                                       replaces=old["id"] if old else "",
                                       description="reschedule" if old else "patient-request")
        conversation.selected, conversation.stage = None, "idle"
        if result.status == "conflict":
            conversation.offers = [s for s in conversation.offers if s["slot_id"] != slot["slot_id"]]
            return [Say(render.booking_failed(result.reason))] + await self._search_and_offer(conversation, turn, None)
        if result.status != "verified":
            return [Escalate("booking-unverified", priority="urgent", text=render.booking_failed(result.reason))]
        conversation.appointment = {"id": result.resource_ref.split("/", 1)[1], "start": result.start,
                                    "end": result.end, "slot_id": result.slot_id}
        conversation.offers, conversation.reschedule = [], False
        if old is None:
            return [Confirm("booked", (result.idempotency_key,))]
        cancelled = await turn.tools.cancel(f"{turn.key}:cancel", old["id"], conversation.patient)
        if cancelled.status != "verified":
            return [Confirm("booked", (result.idempotency_key,)),
                    Escalate("booking-unverified", priority="urgent",
                             text="I could not release your previous appointment; our clinic team will sort it out.")]
        return [Confirm("rescheduled", (result.idempotency_key, cancelled.idempotency_key))]

    async def _load_appointment(self, conversation: Conversation, turn: Turn) -> None:
        booked = [a for a in await turn.tools.appointments(conversation.patient) if a.status == "booked"]
        if booked:
            a = booked[0]
            conversation.appointment = {"id": a.appointment_id, "start": a.start, "end": a.end, "slot_id": a.slot_id}

    async def _ask_cancel(self, conversation: Conversation, turn: Turn) -> list:
        await slots.release(conversation, turn)
        if conversation.appointment is None:
            await self._load_appointment(conversation, turn)
        if conversation.appointment is None:
            conversation.stage = "idle"
            return [Say(render.NO_APPOINTMENT)]
        conversation.stage = "confirm-cancel"
        return [Say(render.ask_cancel(conversation.appointment, turn.tz))]

    async def _cancel(self, conversation: Conversation, turn: Turn) -> list:
        result = await turn.tools.cancel(f"{turn.key}:cancel", conversation.appointment["id"], conversation.patient)
        conversation.stage = "idle"
        if result.status != "verified":
            return [Escalate("booking-unverified", priority="urgent", text=render.SAFE_REPLY)]
        conversation.appointment = None
        return [Confirm("cancelled", (result.idempotency_key,))]
