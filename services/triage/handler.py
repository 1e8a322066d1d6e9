"""Triage handlers: ``findings`` -> decisions on ``actions`` (+ follow-up requests on
``scheduling``); ``feedback`` -> what writeback wrote and the clinician's action, in the ledger,
and closed episodes (``Feedback``). Triage alone writes the decision ledger (``services.triage.ledger``).

Per findings event: the tenant's mode and kill switch for agent ``triage`` (cached <= 1 s), the
policy plans (``policy.plan``), the owner (the patient's oncologist from the CareTeam via
``tools.GetPatientContext``, else the tenant's ``default_owner``), then one PostgreSQL
transaction that joins episodes and records every decision in the ledger. Decision ids are
deterministic (findings event id + index), so a redelivered event re-emits the recorded
decisions instead of deciding again.

- ``silent``: decisions are recorded and emitted with mode=silent, write=false.
- ``pilot``: write=true only when the owner is on the pilot list.
- kill switch on: decisions are recorded with ``suppressed='kill-switch'`` and nothing is
  emitted (no episode is opened or updated); the input is committed.
Follow-up requests are emitted only for decisions that may be written (a silent or pilot-excluded
decision records ``withinDays`` in the ledger instead).

The batch lane's instance (``Triage(..., lane=LANES["batch"])``, stage ``triage-batch``) decides a
silent retrospective run: whatever the tenant's mode, its decisions are recorded with mode=silent,
write=false and the run's name, join no episode (a past note must not reopen or escalate a live
Task), need no owner, and go to ``batch-decisions`` - a stream writeback does not read - and never
to ``scheduling``.

Evidence quotes arrive sealed (``services.core.evidence``; a version-1 event with a plain quote is
handled too), are opened in memory, stored encrypted in the ledger and leave sealed again on the
decision event.
"""
from __future__ import annotations

from datetime import datetime

from prometheus_client import Counter

from services.core import clinician, contracts, evidence
from services.core.agentclients import AgentClients
from services.core.bus import Context
from services.core.crypto import Keyring
from services.core.errors import NotFoundError
from services.core.events import Event, deterministic_id
from services.core.lanes import LANES, REALTIME, Lane
from services.core.modes import ModeStore
from services.core.tenantdb import TenantPools
from services.core.tenantdir import TenantDirectory
from services.triage import episodes, ledger
from services.triage.policy import Plan, TriageSettings, effective, joins_episode, plan, wants_followup
from vigil.v1 import tools_pb2

AGENT = "triage"
DECISION_TYPE = contracts.TRIAGE_DECISION
FOLLOWUP_TYPE = contracts.FOLLOWUP_REQUEST
TASK_WRITTEN = contracts.TASK_WRITTEN
TASK_UPDATED = contracts.TASK_UPDATED
CDS_FEEDBACK = contracts.CDS_FEEDBACK
#: Task statuses after which the episode's Task is no longer open in the inbox.
CLOSING_STATUSES = ("completed", "rejected", "cancelled", "failed", "entered-in-error")

DECISIONS = Counter("vigil_triage_decisions_total", "Decisions made", ("tenant", "kind", "mode", "action"))
SUPPRESSED = Counter("vigil_triage_suppressed_total", "Decisions recorded but not emitted", ("tenant", "reason"))
EMPTY = Counter("vigil_triage_empty_total", "Findings events with nothing to decide", ("tenant",))
CLOSED = Counter("vigil_triage_episodes_closed_total", "Episodes closed by clinician feedback", ("tenant", "status"))
RECORDED = Counter("vigil_triage_ledger_updates_total", "Ledger rows updated from writeback and feedback events",
                   ("tenant", "what"))


class Triage:
    def __init__(self, pools: TenantPools, keyring: Keyring, modes: ModeStore, tenants: TenantDirectory,
                 clients: AgentClients, lane: Lane = LANES[REALTIME]):
        self.pools, self.keyring, self.modes, self.tenants, self.clients = pools, keyring, modes, tenants, clients
        self.lane = lane

    async def owner(self, tenant: str, patient: str, settings: TriageSettings) -> str | None:
        context = await self.clients.call("tools", tenant, "GetPatientContext",
                                          tools_pb2.GetPatientContextRequest(patient_id=patient))
        refs = list(context.oncologist_refs)
        return refs[0] if refs else settings.default_owner

    async def __call__(self, event: Event, ctx: Context) -> None:
        settings = TriageSettings.from_tenant(self.tenants.get(ctx.tenant))
        plans = plan(await evidence.open_findings(self.keyring, ctx.tenant, event.data), settings)
        if not plans:
            EMPTY.labels(ctx.tenant).inc()
            return
        state = await self.modes.state(ctx.tenant, AGENT)
        patient = event.data["patient"]
        batch = self.lane.batch
        owner = None if batch else await self.owner(ctx.tenant, patient, settings)
        write = False if batch else state.writes_for(owner)
        mode = "silent" if batch else state.mode
        suppressed = "kill-switch" if state.killed else None
        emitted: list[tuple[dict, int | None]] = []
        async with self.pools.tx(ctx.tenant) as conn:
            for index, p in enumerate(plans):
                decision_id = deterministic_id(event.id, AGENT, index)
                existing = await ledger.fetch(conn, decision_id)
                if existing is not None:  # redelivery: re-emit exactly what was decided
                    if existing["suppressed"] is None:
                        emitted.append((await self._restore(ctx.tenant, conn, existing),
                                        existing["output"].get("withinDays") if existing["write"] else None))
                    continue
                out, within = await self._decide(conn, ctx.tenant, event, p, decision_id, owner, mode,
                                                 write, settings, suppressed)
                if suppressed is None:
                    emitted.append((out, within if write else None))
        if suppressed:
            SUPPRESSED.labels(ctx.tenant, suppressed).inc(len(plans))
            ctx.log.info("triage.suppressed", reason=suppressed, decisions=len(plans))
            return
        for out, within in emitted:
            ctx.emit(self.lane.decisions,
                     ctx.child(DECISION_TYPE, await evidence.seal_decision(self.keyring, ctx.tenant, out)))
            if within is not None and not batch:
                ctx.emit(contracts.SCHEDULING, ctx.child(FOLLOWUP_TYPE, {
                    "decisionId": out["decisionId"], "patient": out["patient"], "category": out["category"],
                    "grade": out["grade"], "withinDays": within, "owner": out["owner"]}))

    async def _decide(self, conn, tenant: str, event: Event, p: Plan, decision_id: str, owner, mode: str,
                      write: bool, settings: TriageSettings, suppressed: str | None) -> tuple[dict, int | None]:
        data = event.data
        action = previous = None
        key = deterministic_id("no-episode", tenant, decision_id)
        if joins_episode(p) and suppressed is None and not self.lane.batch:
            joined = await episodes.join(conn, tenant, data["patient"], p.category, p.grade, decision_id,
                                         settings.episode_idle_days)
            key, action, previous = joined.key, joined.action, joined.previous_grade
        grade, kind = effective(p, previous)
        within = settings.followup_within_days if wants_followup(grade, kind, action, previous) else None
        decision_write = write and kind != "none"
        out = {"decisionId": decision_id, "patient": data["patient"], "category": p.category, "grade": grade,
               "kind": kind, "owner": owner, "document": dict(data["document"]), "finding": dict(p.finding),
               "engineVersion": data["engineVersion"], "mode": mode, "episodeKey": key,
               "write": decision_write, "reviewRequired": bool(data.get("reviewRequired")),
               "withinDays": within}
        if action:
            out["episodeAction"] = action
        if p.confidence is not None:
            out["confidence"] = p.confidence
        if data.get("noteTime"):  # writeback's time-to-alert, without reading the note again
            out["noteTime"] = data["noteTime"]
        run = data.get("run") if self.lane.batch else None
        if run:
            out["run"] = run
        await ledger.insert(conn, tenant, ledger.Decision(
            id=decision_id, agent=AGENT, patient=data["patient"], category=p.category, kind=kind, mode=mode,
            write=decision_write, output=out, grade=grade, document_id=data["document"]["id"],
            document_version=data["document"]["versionId"], findings_event_id=event.id,
            note_sha256=data.get("noteSha256"), engine=data["engine"], engine_version=data["engineVersion"],
            prompt_hash=data.get("promptHash"), episode_key=key, episode_action=action, suppressed=suppressed,
            confidence=p.confidence, run=run), self.keyring)
        DECISIONS.labels(tenant, kind, mode, action or "none").inc()
        return out, within

    async def _restore(self, tenant: str, conn, row: dict) -> dict:
        out = dict(row["output"])
        finding = dict(out.get("finding") or {})
        finding["quote"] = ""
        if row["quote"] is not None:
            finding["quote"] = (await self.keyring.decrypt(tenant, bytes(row["quote"]),
                                                           ledger.QUOTE_PURPOSE)).decode("utf-8")
        out["finding"] = finding
        return out


class Feedback:
    """What became of a decision, from ``feedback`` (in order per patient, so a Task's task-written
    comes before the clinician's answer to it):

    - writeback wrote (and read back) the decision's Task: its refs and Task id go to the ledger;
      idempotent (the same refs set again); a decision the ledger does not hold is logged, not retried;
    - a clinician answered a Vigil result: the action goes to the ledger (per Task from the inbox,
      per decision from a CDS Hooks card), and the episodes behind a completed or rejected Task close."""

    def __init__(self, pools: TenantPools):
        self.pools = pools
        self.ledger = ledger.DecisionLedger(pools)

    async def __call__(self, event: Event, ctx: Context) -> None:
        handler = self.HANDLERS.get(event.type)
        if handler is not None:
            await handler(self, event, ctx)

    async def _written(self, event: Event, ctx: Context) -> None:
        try:
            await self.ledger.record_writes(ctx.tenant, event.data["decisionId"], event.data["refs"])
        except NotFoundError:
            ctx.log.warning("triage.written_unknown_decision")
            return
        RECORDED.labels(ctx.tenant, "written").inc()

    async def _card(self, event: Event, ctx: Context) -> None:
        d = event.data
        when = datetime.fromisoformat(d["time"].replace("Z", "+00:00"))
        labelled = 0
        for decision_id in d["decisions"]:
            labelled += len(await self.ledger.record_feedback(ctx.tenant, decision_id, d["outcome"], d.get("reason"),
                                                              when))
        RECORDED.labels(ctx.tenant, "card-feedback").inc(labelled)
        ctx.log.info("triage.card_feedback", outcome=d["outcome"], decisions=labelled)

    async def _task(self, event: Event, ctx: Context) -> None:
        status = event.data["status"]
        task_id = event.data["task"]["id"]
        action = clinician.task_action(status)
        labelled = []
        if action is not None:
            labelled = await self.ledger.record_feedback(ctx.tenant, f"Task/{task_id}", action,
                                                         event.data.get("statusReason") or event.data.get("note"))
            RECORDED.labels(ctx.tenant, "task-feedback").inc(len(labelled))
        if status not in CLOSING_STATUSES:
            return
        async with self.pools.tx(ctx.tenant) as conn:
            keys = [r["episode_key"] for r in await conn.fetch(
                "SELECT DISTINCT episode_key FROM vigil_decisions WHERE task_id = $1 AND episode_key IS NOT NULL",
                task_id)]
            closed = [k for k in keys if await episodes.close(conn, k, f"task-{status}")]
        if closed:
            CLOSED.labels(ctx.tenant, status).inc(len(closed))
        ctx.log.info("triage.feedback", status=status, episodes_closed=len(closed), known_task=bool(keys),
                     ledger=len(labelled))

    #: event type -> handler: the stage's one table (``TYPES``, what the runtime lets through, is its keys).
    HANDLERS = {TASK_WRITTEN: _written, CDS_FEEDBACK: _card, TASK_UPDATED: _task}
    TYPES = frozenset(HANDLERS)
