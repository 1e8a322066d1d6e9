"""One conversation turn: load the thread, read the EHR, run the tenant's engine, deliver the replies.

    agent = SchedulingAgent(clients, store, tenants, consents=ConsentLedger(clients))
    await agent.start(tenant, followup_request_data, message_key=event_id)   # clinic opens
    await agent.on_message(tenant, communication_id, version)                # patient writes
    await agent.on_appointment(tenant, appointment_id, version, patient)     # the EHR changed

- The message text is read through tools (``GetMessage``), never taken from an event; a
  Communication not sent by its subject patient is ignored (our own messages come back as
  events too).
- A message already handled (same Communication id and version) is a no-op; every side effect
  of a turn has an idempotency key derived from (conversation, message), so a turn re-run after
  a crash replays the ledger instead of acting twice.
- Every turn first reads the patient's appointments from the EHR (``appointment_sync``): a change
  staff made is told once, and the turn works from what the EHR holds now.
- Before any engine, in the patient's language (``intents``, ``lang``): urgent symptoms, a request
  for a person, or a message in a language the tenant did not declare go to staff with the
  safety reply; the answer to a pending proposal is taken here for both engines - only an
  unambiguous yes books or cancels, after the consent is in the ledger (``consent``); a hedge
  keeps the proposal open; thanks, logistics and "when is my appointment?" are answered here.
- Replies pass the guard: confirmations are rendered from the ledger (``guard``), free text
  that claims an action is blocked, replaced by a safe reply and escalated.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable
from zoneinfo import ZoneInfo

from services.core.agentclients import AgentClients
from services.core.config import ConfigError
from services.core.logging import get_logger
from services.core.tenantdir import TenantDirectory
from services.scheduling import actions, appointment_sync, dates, guard, intents, lang, logistics, render, slots
from services.scheduling.consent import ConsentLedger
from services.scheduling.dialogue import DialogueEngine
from services.scheduling.engine import Turn
from services.scheduling.replies import Confirm, Escalate, Fact, Say, Status
from services.scheduling.state import Conversation, ConversationStore
from services.scheduling.toolbox import Toolbox

log = get_logger("vigil.scheduling")
ENGINES = ("dialogue", "llm")
#: Longest patient message handled automatically; longer ones go to staff.
MAX_MESSAGE_CHARS = 1000
HISTORY_MAX = 40
OPEN_STAGES = ("offering", "confirming", "confirm-cancel")


@dataclass
class TurnResult:
    conversation_id: str = ""
    patient: str = ""
    sent: list[str] = field(default_factory=list)      # Communication ids sent this turn
    texts: list[str] = field(default_factory=list)     # what was sent (tests; never logged)
    tasks: list[str] = field(default_factory=list)     # Task refs created this turn
    blocked: int = 0                                   # replies the guard refused
    duplicate: bool = False
    ignored: str = ""                                  # why nothing was done
    elapsed_s: float = 0.0                             # server-side time of the turn


class SchedulingAgent:
    def __init__(self, clients: AgentClients, store: ConversationStore, tenants: TenantDirectory, *,
                 consents: ConsentLedger, llm_engines: Callable | None = None,
                 clock: Callable[[], datetime] | None = None):
        self.clients, self.store, self.tenants, self.consents = clients, store, tenants, consents
        self.dialogue = DialogueEngine()
        self.llm_engines = llm_engines          # tenant -> LlmEngine (services.scheduling.app)
        self.clock = clock or (lambda: datetime.now(timezone.utc))

    def _engine(self, tenant):
        name = tenant.setting("scheduling_engine", "dialogue") or "dialogue"
        if name not in ENGINES:
            raise ConfigError(f"tenant {tenant.id}: settings.scheduling_engine={name!r} is not one of {ENGINES}")
        if name == "llm":
            if self.llm_engines is None:
                raise ConfigError(f"tenant {tenant.id}: the llm scheduling engine is not configured in this process")
            return self.llm_engines(tenant)
        return self.dialogue

    @staticmethod
    def _languages(tenant) -> tuple[str, ...]:
        try:
            return lang.declared(tenant.setting("scheduling_languages"))
        except ValueError as exc:
            raise ConfigError(f"tenant {tenant.id}: {exc}") from None

    def _turn(self, tenant, conversation: Conversation, message_key: str, reading=None) -> Turn:
        tz = ZoneInfo(tenant.setting("time_zone", "UTC") or "UTC")
        owner = conversation.context.get("owner") or ""
        return Turn(tools=Toolbox(self.clients, tenant.id), now=self.clock().astimezone(tz), tz=tz,
                    key=f"{conversation.id}:{message_key}",
                    practitioner=owner.split("/", 1)[1] if owner.startswith("Practitioner/") else "",
                    service_type=tenant.setting("scheduling_service_type", "") or "",
                    language=conversation.language or self._languages(tenant)[0], reading=reading)

    # -- entry points ------------------------------------------------------------------------
    async def start(self, tenant_id: str, request: dict, message_key: str) -> TurnResult:
        tenant = self.tenants.get(tenant_id)
        patient = request["patient"]
        token = await self.store.lock(tenant.id, patient)
        try:
            conversation = await self.store.load(tenant.id, patient)
            if conversation is not None and message_key in conversation.seen:
                return TurnResult(conversation.id, patient, duplicate=True)
            fresh = conversation is None or conversation.status != "open"
            if fresh:
                conversation = Conversation.new(patient, {k: request.get(k) for k in
                                                          ("decisionId", "category", "grade", "withinDays", "owner")})
            turn = self._turn(tenant, conversation, message_key)
            # an open thread is brought up to date first; a new one offers times for this request
            notices = [] if fresh else await appointment_sync.sync(conversation, turn)
            if conversation.appointment is not None:
                result = await self._deliver(conversation, turn, [Fact(n) for n in notices], in_response_to="")
                result.ignored = "already-booked"
            else:
                replies = await self._engine(tenant).open(conversation, turn)
                result = await self._deliver(conversation, turn, [Fact(n) for n in notices] + replies,
                                             in_response_to="")
            conversation.remember(message_key)
            await self.store.save(tenant.id, conversation)
            return result
        finally:
            await self.store.unlock(tenant.id, patient, token)

    async def on_message(self, tenant_id: str, communication_id: str, version: str = "") -> TurnResult:
        started = time.monotonic()
        tenant = self.tenants.get(tenant_id)
        turn_tools = Toolbox(self.clients, tenant.id)
        message = await turn_tools.message(communication_id, version)
        if not message.from_patient or not message.patient_id:
            return TurnResult(ignored="not-from-patient")
        patient, message_key = message.patient_id, f"{communication_id}.{message.version}"
        token = await self.store.lock(tenant.id, patient)
        try:
            conversation = await self.store.load(tenant.id, patient) or Conversation.new(patient)
            if message_key in conversation.seen:
                return TurnResult(conversation.id, patient, duplicate=True)
            conversation.messages.append(communication_id)
            conversation.turn += 1
            languages = self._languages(tenant)
            text = message.text.strip()
            reading = intents.read(text, languages)
            if reading.language in languages and (not conversation.language or reading.margin >= 2):
                conversation.language = reading.language       # a clear switch, not one stray word
            turn = self._turn(tenant, conversation, message_key, reading)
            notices = await appointment_sync.sync(conversation, turn)
            replies = await self._respond(tenant, conversation, text, reading, turn,
                                          f"Communication/{communication_id}/_history/{message.version}")
            conversation.history.append({"role": "user", "content": text})
            result = await self._deliver(conversation, turn, [Fact(n) for n in notices] + replies,
                                         in_response_to=communication_id)
            conversation.remember(message_key)
            conversation.history = conversation.history[-HISTORY_MAX:]
            await self.store.save(tenant.id, conversation)
            result.elapsed_s = time.monotonic() - started
            return result
        finally:
            await self.store.unlock(tenant.id, patient, token)

    async def on_appointment(self, tenant_id: str, appointment_id: str, version: str, patient: str) -> TurnResult:
        """An Appointment of the patient changed in the EHR (the appointment subscription): a change
        the conversation did not make is told to the patient now, once."""
        tenant = self.tenants.get(tenant_id)
        message_key = f"appointment-{appointment_id}.{version}"
        token = await self.store.lock(tenant.id, patient)
        try:
            conversation = await self.store.load(tenant.id, patient)
            if conversation is None:
                return TurnResult(patient=patient, ignored="no-conversation")
            if message_key in conversation.seen:
                return TurnResult(conversation.id, patient, duplicate=True)
            turn = self._turn(tenant, conversation, message_key)
            notices = await appointment_sync.sync(conversation, turn)
            result = await self._deliver(conversation, turn, [Fact(n) for n in notices], in_response_to="")
            conversation.remember(message_key)
            await self.store.save(tenant.id, conversation)
            return result
        finally:
            await self.store.unlock(tenant.id, patient, token)

    # -- what to answer ----------------------------------------------------------------------
    async def _respond(self, tenant, conversation: Conversation, text: str, reading, turn: Turn,
                       message_ref: str) -> list:
        language, languages = turn.language, self._languages(tenant)
        if reading.urgent:
            await appointment_sync.forget_proposal(conversation, turn)
            conversation.status = "escalated"
            return [Escalate("urgent-symptoms", priority="urgent", text=render.say("urgent_reply", language))]
        if not text or len(text) > MAX_MESSAGE_CHARS:
            await appointment_sync.forget_proposal(conversation, turn)
            return [Escalate("unparseable", text=render.say("safety_handoff", language))]
        if reading.language == lang.OTHER:
            # to staff; the offers are withdrawn too, so a later "yes" is never a yes to an offer not re-made
            await appointment_sync.forget_proposal(conversation, turn)
            conversation.offers, conversation.stage = [], "idle"
            return [Escalate("other-language", text="\n\n".join(render.say("safety_handoff", c) for c in languages))]
        if reading.staff:
            await appointment_sync.forget_proposal(conversation, turn)
            if conversation.stage == "offering":
                conversation.stage = "idle"          # staff take it from here; the offers stay listed
            return [Escalate("patient-request", text=render.say("staff_requested", language))]
        if conversation.status == "escalated":
            if reading.only_thanks:
                return [Say(render.say("thanks_close", language))]
            if reading.status:
                return [Status()]
            if reading.logistics:
                return [Fact(logistics.answer(tenant, reading.logistics, language))]
            return [Say(render.say("escalated", language))]
        if reading.unintelligible:                                  # for both engines: twice -> staff
            return self.dialogue.failed(conversation, turn)
        failed, conversation.failed = conversation.failed, 0      # reset unless the engine fails again
        replies = await self._decide(tenant, conversation, text, reading, turn, message_ref)
        if replies is None:
            conversation.failed = failed
            replies = await self._engine(tenant).reply(conversation, text, turn)
        return replies

    async def _decide(self, tenant, conversation: Conversation, text: str, reading, turn: Turn,
                      message_ref: str) -> list | None:
        """What both engines share; None: the engine answers."""
        language, answer = turn.language, reading.answer
        prompt = self.dialogue.prompt
        if reading.consents_to_pick and conversation.offers and conversation.stage in ("offering", "confirming", "idle"):
            index = reading.pick if reading.pick >= 0 else len(conversation.offers) - 1
            if index < len(conversation.offers):
                proposed, replies = await actions.propose(conversation, turn, conversation.offers[index])
                if not proposed:
                    return replies + await self.dialogue.reoffer(conversation, turn)
                conversation.reschedule = conversation.appointment is not None    # one visit: a new time moves it
                return await self._book(tenant, conversation, text, reading, turn, message_ref)
        if conversation.stage == "confirming" and conversation.selected:
            # "yes, switch it" to a proposed new time for the booked visit is a yes to that one proposal
            moving = (conversation.reschedule and reading.yes and reading.move and not (
                reading.hedge or reading.no or reading.question or reading.cancel or reading.names_date
                or reading.pick is not None))
            if answer == "yes" or moving:
                return await self._book(tenant, conversation, text, reading, turn, message_ref)
            if answer == "hedge":
                hedge = render.about("hedge_slot", conversation.selected["start"], turn.tz, language)
                return [Say(render.say("thanks_open", language) + " " + hedge if reading.thanks else hedge)]
            if reading.ack:                        # "ok": read, not agreed; ask for the yes that books
                return [Say(render.about("yes_to_book", conversation.selected["start"], turn.tz, language))]
        # "yes, cancel it" is a yes to one specific appointment only when the EHR holds just one
        if conversation.appointment and (reading.consents_to_cancel and turn.booked == 1
                                         or conversation.stage == "confirm-cancel" and answer == "yes"):
            await self._consent(tenant, conversation, turn, text, message_ref, "cancel",
                                appointment=conversation.appointment["id"], start=conversation.appointment["start"])
            return await actions.cancel(conversation, turn)
        if conversation.stage == "confirm-cancel" and conversation.appointment and answer == "hedge":
            return [Say(render.about("hedge_cancel", conversation.appointment["start"], turn.tz, language))]
        if reading.hedge and not reading.cancel:
            if dates.parse(reading.date_text, turn.now) is not None:
                return None                               # times for the day they name; an offer books nothing
            if conversation.stage == "offering":
                return [Say(render.say("hedge_offers", language))]
            if conversation.stage == "idle" and conversation.appointment:
                return [Say(render.say("acknowledged", language))]
        if reading.only_thanks and not (reading.yes and reading.pick is not None):
            if conversation.stage in OPEN_STAGES:
                return [Say(render.say("thanks_open", language) + " " + prompt(conversation, turn))]
            return [Say(render.say("thanks_close" if reading.thanks else "bye_close", language))]
        if reading.status and (reading.question or not (reading.cancel or reading.move)):
            return [Status()]
        if reading.logistics and not (reading.cancel or reading.move or reading.choice is not None):
            replies: list = [Fact(logistics.answer(tenant, reading.logistics, language))]
            if conversation.stage in OPEN_STAGES:
                replies.append(Say(prompt(conversation, turn)))
            return replies
        if reading.question and reading.pick is not None and conversation.offers and not reading.names_date:
            return [Say(render.offers(conversation.offers, turn.tz, render.say("offers_again", language), language))]
        if reading.greeting:
            return [Say(render.say("hello", language) + " " + prompt(conversation, turn))]
        if (reading.availability and not reading.move and conversation.stage in ("offering", "confirming")
                and conversation.offers and dates.parse(reading.date_text, turn.now) is None):
            await slots.release(conversation, turn)
            conversation.stage = "offering"
            return [Say(prompt(conversation, turn))]
        if reading.yes and not (reading.cancel or reading.move or reading.pick is not None or reading.question) \
                and conversation.stage == "idle" and conversation.appointment:
            return [Say(render.say("acknowledged", language))]
        if answer == "yes" and conversation.stage == "idle" and not conversation.offers and not conversation.appointment \
                and reading.pick is None and not (reading.availability or reading.scheduling_words or reading.status
                                                  or reading.logistics):
            return [Say(prompt(conversation, turn))]     # a bare yes to nothing on offer books nothing: ask
        return None

    async def _consent(self, tenant, conversation: Conversation, turn: Turn, text: str, message_ref: str,
                       action: str, **what) -> None:
        await self.consents.record(tenant.id, f"{turn.key}:consent", conversation=conversation.id, reply=message_ref,
                                   reply_text=text, asked=f"Communication/{conversation.last_sent}" if
                                   conversation.last_sent else "", action=action, **what)
        log.info("scheduling.consent", conversation=conversation.id, action=action)

    async def _book(self, tenant, conversation: Conversation, text: str, reading, turn: Turn, message_ref: str) -> list:
        slot = conversation.selected
        old = conversation.appointment if conversation.reschedule else None
        await self._consent(tenant, conversation, turn, text, message_ref, "reschedule" if old else "book",
                            slot=slot["slot_id"], start=slot["start"], appointment=old["id"] if old else "")
        status, replies = await actions.book(conversation, turn)
        if status == "conflict":
            replies += await self.dialogue.reoffer(conversation, turn)
        elif status == "verified" and reading.logistics:
            replies.append(Fact(logistics.answer(tenant, reading.logistics, turn.language)))
        return replies

    # -- delivery ----------------------------------------------------------------------------
    async def _deliver(self, conversation: Conversation, turn: Turn, replies: list, in_response_to: str) -> TurnResult:
        result = TurnResult(conversation.id, conversation.patient)
        texts: list[str] = []
        for reply in replies:
            if isinstance(reply, Fact):
                if reply.text:
                    texts.append(reply.text)
                continue
            if isinstance(reply, Confirm):
                text = await guard.render_confirmation(turn.tools, reply, turn.tz, turn.language)
                if text is None:
                    result.blocked += 1
                    reply = Escalate("blocked-claim", text=render.say("safe_reply", turn.language))
                else:
                    texts.append(text)
                    continue
            if isinstance(reply, Say):
                if guard.claims_action(reply.text):
                    result.blocked += 1
                    log.warning("scheduling.claim_blocked", conversation=conversation.id)
                    reply = Escalate("blocked-claim", text=render.say("safe_reply", turn.language))
                else:
                    texts.append(reply.text)
                    continue
            if isinstance(reply, Status):
                texts.append(render.appointment_status(await turn.tools.appointments(conversation.patient), turn.tz,
                                                       turn.language))
                continue
            if isinstance(reply, Escalate):
                task = await turn.tools.staff_task(f"{turn.key}:task:{reply.reason}", conversation.patient,
                                                   reply.reason, reply.priority, list(conversation.messages),
                                                   conversation.id)
                result.tasks.append(task.resource_ref)
                log.info("scheduling.escalated", conversation=conversation.id, reason=reply.reason)
                if reply.text and reply.text not in texts:
                    texts.append(reply.text)
        for index, text in enumerate(texts):
            sent = await turn.tools.send(f"{turn.key}:msg:{index}", conversation.patient, text, conversation.id,
                                         in_response_to)
            communication = sent.resource_ref.split("/", 1)[1]
            conversation.messages.append(communication)
            conversation.history.append({"role": "assistant", "content": text})
            conversation.last_sent = communication
            result.sent.append(communication)
            result.texts.append(text)
        log.info("scheduling.turn", conversation=conversation.id, replies=len(texts), tasks=len(result.tasks),
                 blocked=result.blocked, stage=conversation.stage)
        return result
