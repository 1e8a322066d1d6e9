"""The deterministic dialogue manager (default engine, offline): offers times, understands dates
and times (English and Spanish words), choices by number, change of mind before and after
booking, cancel and reschedule; unrelated questions get a safe redirect; a second message not
understood goes to a human. Yes to a proposal, hedges, thanks, logistics, status, urgent
symptoms and requests for a person are handled by the agent before this engine runs."""
from __future__ import annotations

from services.scheduling import actions, dates, render, slots
from services.scheduling.engine import MAX_FAILED, OFFERED, Turn
from services.scheduling.replies import Escalate, Say
from services.scheduling.state import Conversation

OPEN_INTRO = render.say("open_intro")
PATIENT_INTRO = render.say("patient_intro")


class DialogueEngine:
    name = "dialogue"

    async def open(self, conversation: Conversation, turn: Turn) -> list:
        found = await slots.search(conversation, turn, None)
        return self._offer(conversation, turn, found, render.say("open_intro", turn.language)) if found else \
            [Escalate("no-availability", text=render.say("handoff", turn.language))]

    async def reply(self, conversation: Conversation, text: str, turn: Turn) -> list:
        r, language = turn.reading, turn.language
        when = dates.parse(r.date_text, turn.now)
        choice, no, cancel, move = r.choice, r.no, r.cancel, r.move
        if choice is not None and conversation.offers:
            when = None                         # "the 2nd" with times on the list is the second of them
        if choice is None and r.pick is not None and not ((no and not r.prefers) or r.hedge or cancel or move or r.question):
            choice = r.pick                     # a choice inside a sentence ("Let's do the second one.",
                                                # "no, mejor el tercero": a change of choice, proposed again)

        if conversation.stage == "confirm-cancel":
            conversation.stage = "idle"
            if no and when is None and not move and conversation.appointment:
                return [Say(render.about("keep_appointment", conversation.appointment["start"], turn.tz, language))]
        if cancel and not move and when is None:
            if conversation.appointment is None and conversation.stage in ("offering", "confirming"):
                await slots.release(conversation, turn)
                conversation.stage, conversation.offers = "idle", []
                return [Say(render.say("declined", language))]
            return await actions.ask_cancel(conversation, turn)
        if move or (conversation.appointment and when is not None and conversation.stage != "confirming"):
            conversation.reschedule = conversation.appointment is not None
            await slots.release(conversation, turn)
            return await self._search_and_offer(conversation, turn, when)
        if conversation.stage == "confirming" and conversation.selected:
            if when is not None or choice is not None or no:
                await slots.release(conversation, turn)
                conversation.stage = "offering"
                if when is None and choice is None:
                    if conversation.offers:
                        return [Say(render.say("no_problem_offers", language) + " " + render.offers(
                            conversation.offers, turn.tz, render.say("offers_have", language), language))]
                    return [Say(render.say("no_problem_ask", language))]
        if choice is not None and conversation.offers:
            index = choice if choice >= 0 else len(conversation.offers) - 1
            if index < len(conversation.offers):
                return await self._select(conversation, turn, conversation.offers[index])
        if when is None and (r.availability or move) and not conversation.appointment:
            return await self._search_and_offer(conversation, turn, None)
        if when is not None:
            if when.ambiguous:
                return [Say(render.say("not_sure_date", language, why=when.ambiguous))]
            offered = [s for s in conversation.offers if dates.matches(when, slots.local(s["start"], turn))]
            if len(offered) == 1 and (when.at or when.day):
                return await self._select(conversation, turn, offered[0])
            return await self._search_and_offer(conversation, turn, when)
        if r.yes and conversation.stage == "offering" and len(conversation.offers) == 1:
            return await self._select(conversation, turn, conversation.offers[0])
        if no and conversation.stage == "offering":
            conversation.stage = "idle"                       # the offers stay listed if they pick one later
            return [Say(render.say("declined", language))]
        if r.yes and conversation.stage == "offering":
            return [Say(render.say("which_one", language))]
        if no and conversation.appointment and conversation.stage == "idle":
            return [Say(render.about("kept_after_no", conversation.appointment["start"], turn.tz, language))]
        if r.question and not r.scheduling_words:
            return [Say(render.say("redirect", language) + " " + self.prompt(conversation, turn))]
        return self.failed(conversation, turn)

    # -- steps -------------------------------------------------------------------------------
    @staticmethod
    def prompt(conversation: Conversation, turn: Turn) -> str:
        """The open question of the conversation, asked again."""
        language = turn.language
        if conversation.stage == "confirming" and conversation.selected:
            return render.ask_confirm(conversation.selected, turn.tz, language)
        if conversation.stage == "confirm-cancel" and conversation.appointment:
            return render.ask_cancel(conversation.appointment, turn.tz, language)
        if conversation.stage == "offering" and conversation.offers:
            return render.offers(conversation.offers, turn.tz, render.say("offers_again", language), language)
        return render.say("find_time", language)

    async def reoffer(self, conversation: Conversation, turn: Turn) -> list:
        """Fresh times after the proposed one was taken."""
        return await self._search_and_offer(conversation, turn, None)

    def failed(self, conversation: Conversation, turn: Turn) -> list:
        conversation.failed += 1
        if conversation.failed >= MAX_FAILED:
            conversation.failed = 0
            return [Escalate("failed-attempts", text=render.say("safety_handoff", turn.language))]
        return [Say(render.say("not_understood", turn.language))]

    def _offer(self, conversation: Conversation, turn: Turn, found: list[dict], intro: str) -> list:
        conversation.offers = found[:OFFERED]
        conversation.stage = "offering"
        return [Say(render.offers(conversation.offers, turn.tz, intro, turn.language))]

    async def _search_and_offer(self, conversation: Conversation, turn: Turn, when) -> list:
        language = turn.language
        if when is not None and when.ambiguous:
            return [Say(render.say("not_sure_date", language, why=when.ambiguous))]
        found = await slots.search(conversation, turn, when)
        if when is not None and when.at and len(found) == 1:
            conversation.failed = 0
            return await self._select(conversation, turn, found[0])
        if found:
            conversation.failed = 0
            return self._offer(conversation, turn, found, render.say("patient_intro", language))
        failed = self.failed(conversation, turn)
        if isinstance(failed[0], Escalate):
            return failed
        nearby = await slots.search(conversation, turn, None)
        what = render.window(when, language) if when is not None else render.say("in_the_next_days", language)
        if nearby:
            return [Say(render.say("no_free_time", language, what=what))] + \
                self._offer(conversation, turn, nearby, render.say("patient_intro", language))
        return [Say(render.say("no_free_time_ask", language, what=what))]

    async def _select(self, conversation: Conversation, turn: Turn, slot: dict) -> list:
        proposed, replies = await actions.propose(conversation, turn, slot)
        if proposed:
            return replies
        return replies + await self._search_and_offer(conversation, turn, None)
