"""One conversation turn: load the thread, run the tenant's engine, deliver the replies.

    agent = SchedulingAgent(clients, store, tenants)
    await agent.start(tenant, followup_request_data, message_key=event_id)   # clinic opens
    await agent.on_message(tenant, communication_id, version)                # patient writes

- The message text is read through tools (``GetMessage``), never taken from an event; a
  Communication not sent by its subject patient is ignored (our own messages come back as
  events too).
- A message already handled (same Communication id and version) is a no-op; every side effect
  of a turn has an idempotency key derived from (conversation, message), so a turn re-run after
  a crash replays the ledger instead of acting twice.
- Urgent symptoms stop the automation before any engine runs: a staff Task (urgent) with the
  conversation attached, and a fixed safe reply.
- Replies pass the guard: confirmations are rendered from the ledger (``guard``), free text
  that claims an action is blocked, replaced by a safe reply and escalated.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable
from zoneinfo import ZoneInfo

from services.core.agentclients import AgentClients
from services.core.config import ConfigError
from services.core.logging import get_logger
from services.core.tenantdir import TenantDirectory
from services.scheduling import guard, intents, render, slots
from services.scheduling.dialogue import DialogueEngine
from services.scheduling.engine import Turn
from services.scheduling.replies import Confirm, Escalate, Say, Status
from services.scheduling.state import Conversation, ConversationStore
from services.scheduling.toolbox import Toolbox

log = get_logger("vigil.scheduling")
ENGINES = ("dialogue", "llm")
#: Longest patient message handled automatically; longer ones go to staff.
MAX_MESSAGE_CHARS = 1000
HISTORY_MAX = 40


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


class SchedulingAgent:
    def __init__(self, clients: AgentClients, store: ConversationStore, tenants: TenantDirectory, *,
                 llm_engines: Callable | None = None, clock: Callable[[], datetime] | None = None):
        self.clients, self.store, self.tenants = clients, store, tenants
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

    def _turn(self, tenant, conversation: Conversation, message_key: str) -> Turn:
        tz = ZoneInfo(tenant.setting("time_zone", "UTC") or "UTC")
        owner = conversation.context.get("owner") or ""
        return Turn(tools=Toolbox(self.clients, tenant.id), now=self.clock().astimezone(tz), tz=tz,
                    key=f"{conversation.id}:{message_key}",
                    practitioner=owner.split("/", 1)[1] if owner.startswith("Practitioner/") else "",
                    service_type=tenant.setting("scheduling_service_type", "") or "")

    # -- entry points ------------------------------------------------------------------------
    async def start(self, tenant_id: str, request: dict, message_key: str) -> TurnResult:
        tenant = self.tenants.get(tenant_id)
        patient = request["patient"]
        token = await self.store.lock(tenant.id, patient)
        try:
            conversation = await self.store.load(tenant.id, patient)
            if conversation is not None and message_key in conversation.seen:
                return TurnResult(conversation.id, patient, duplicate=True)
            if conversation is None or conversation.status != "open":
                conversation = Conversation.new(patient, {k: request.get(k) for k in
                                                          ("decisionId", "category", "grade", "withinDays", "owner")})
            elif conversation.appointment is not None:
                conversation.remember(message_key)
                await self.store.save(tenant.id, conversation)
                return TurnResult(conversation.id, patient, ignored="already-booked")
            turn = self._turn(tenant, conversation, message_key)
            replies = await self._engine(tenant).open(conversation, turn)
            result = await self._deliver(conversation, turn, replies, in_response_to="")
            conversation.remember(message_key)
            await self.store.save(tenant.id, conversation)
            return result
        finally:
            await self.store.unlock(tenant.id, patient, token)

    async def on_message(self, tenant_id: str, communication_id: str, version: str = "") -> TurnResult:
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
            turn = self._turn(tenant, conversation, message_key)
            text = message.text.strip()
            if intents.urgent(text):
                await slots.release(conversation, turn)
                conversation.status, conversation.stage = "escalated", "idle"
                replies = [Escalate("urgent-symptoms", priority="urgent", text=render.URGENT_REPLY)]
            elif conversation.status == "escalated":
                replies = [Say("A member of our care team has your messages and will contact you.")]
            elif not text or len(text) > MAX_MESSAGE_CHARS:
                replies = [Escalate("unparseable", text=render.HANDOFF)]
            else:
                replies = await self._engine(tenant).reply(conversation, text, turn)
            conversation.history.append({"role": "user", "content": text})
            result = await self._deliver(conversation, turn, replies, in_response_to=communication_id)
            conversation.remember(message_key)
            conversation.history = conversation.history[-HISTORY_MAX:]
            await self.store.save(tenant.id, conversation)
            return result
        finally:
            await self.store.unlock(tenant.id, patient, token)

    # -- delivery ----------------------------------------------------------------------------
    async def _deliver(self, conversation: Conversation, turn: Turn, replies: list, in_response_to: str) -> TurnResult:
        result = TurnResult(conversation.id, conversation.patient)
        texts: list[str] = []
        for reply in replies:
            if isinstance(reply, Confirm):
                text = await guard.render_confirmation(turn.tools, reply, turn.tz)
                if text is None:
                    result.blocked += 1
                    reply = Escalate("blocked-claim", text=render.SAFE_REPLY)
                else:
                    texts.append(text)
                    continue
            if isinstance(reply, Say):
                if guard.claims_action(reply.text):
                    result.blocked += 1
                    log.warning("scheduling.claim_blocked", conversation=conversation.id)
                    reply = Escalate("blocked-claim", text=render.SAFE_REPLY)
                else:
                    texts.append(reply.text)
                    continue
            if isinstance(reply, Status):
                texts.append(render.appointment_status(await turn.tools.appointments(conversation.patient), turn.tz))
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
            result.sent.append(communication)
            result.texts.append(text)
        log.info("scheduling.turn", conversation=conversation.id, replies=len(texts), tasks=len(result.tasks),
                 blocked=result.blocked, stage=conversation.stage)
        return result
