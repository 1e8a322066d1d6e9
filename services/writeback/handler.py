"""The writeback stage handler: one ``vigil.triage.decision`` -> at most one EHR transaction.

Order of checks for a decision of a writable kind (urgent-task, routine-task, review-task):

1. The tenant's integration profile: without ``fhir`` in its results channels nothing is written
   (hl7out or CDS Hooks deliver it); with it, only the resource types the EHR accepts go into the
   transaction (``resources.only_accepted`` says what degrades).
2. Mode: the decision's own ``write`` flag and ``mode`` (what triage decided) AND the current
   state of the ``writeback`` agent (``ModeStore``): silent -> nothing is written; pilot -> only
   when the owner is in the pilot list. Such a decision is finished (committed), not retried.
3. Kill switch (tenant-wide or ``writeback``), checked before any EHR call and again right
   before the transaction (fresh read): the handler raises ``KillSwitchOn``, a RetryableError.
   Choice: the decision is *kept*, not dropped - it goes through the retry topics (5 s, 30 s,
   5 min) and then to the DLQ, from which ``vigil dlq replay --stage writeback`` writes it once
   the switch is off (writes are idempotent, so a replay never duplicates). Writes stop within
   ``modes.CACHE_TTL_S`` (1 s) of the switch.
4. ``Writer.write``: idempotent by the EHR identifiers (the decision id on the Task and its
   evidence, conditional creates), read-back verified (see ``writer``).
5. One ``vigil.writeback.task-written`` event (note time -> written time, for time-to-alert; the
   read-back refs) is emitted on ``feedback`` - also when the write was found done already (its
   action then says whether the decision created the Task: the Task's first decision id), with
   the same event id for every delivery of the decision, so a redelivery or a DLQ replay of a
   write whose answer was lost still reaches triage's ledger, once. Writeback keeps no table.

The note time comes in the decision event (``noteTime``); only an older event without it costs a
read of the note. Other event types on ``actions`` (scheduling messages) are passed over by the
runtime (``StageSpec.types``). The decision's evidence quote arrives sealed with the tenant key
(``services.core.evidence``) and is opened in memory (a version-1 decision with a plain quote is
handled too).
"""
from __future__ import annotations

from datetime import datetime, timezone

from services.core import contracts
from services.core import evidence, vigiltasks
from services.core.delivery import delivery_suppressed
from services.core.errors import NotFoundError, RetryableError
from services.core.logging import get_logger
from services.writeback import resources as R
from services.writeback.deps import Deps
from services.writeback.writer import Writer

STAGE = "writeback"
AGENT = "writeback"
DECISION_TYPE = contracts.TRIAGE_DECISION
TASK_WRITTEN = contracts.TASK_WRITTEN
#: The results channel this stage serves (``IntegrationProfile.results``).
CHANNEL = "fhir"

log = get_logger("vigil.writeback")


class KillSwitchOn(RetryableError):
    code = "kill_switch"


class Writeback:
    def __init__(self, deps: Deps):
        self.deps = deps

    async def __call__(self, event, ctx) -> None:
        if event.type != DECISION_TYPE:
            return
        d, tenant = event.data, ctx.tenant
        if d["kind"] not in R.WRITABLE_KINDS:
            return
        d = await evidence.open_decision(self.deps.keyring, tenant, d)
        state = await self.deps.modes.state(tenant, AGENT)
        why_not = delivery_suppressed(d, state)
        profile = self.deps.directory.get(tenant).integration
        if not profile.delivers(CHANNEL):
            ctx.log.info("writeback.not_a_channel", decision=d["decisionId"])
            return
        if why_not:
            ctx.log.info("writeback.suppressed", reason=why_not, decision=d["decisionId"])
            return
        if state.killed:
            raise KillSwitchOn("writes are stopped by the kill switch")

        async def guard() -> None:
            if (await self.deps.modes.state(tenant, AGENT, fresh=True)).killed:
                raise KillSwitchOn("writes are stopped by the kill switch")

        client = await self.deps.client(tenant)
        outcome = await Writer(client, profile.accepts).write(d, guard)
        ctx.log.info("writeback.written", action=outcome.action, decision=d["decisionId"], refs=len(outcome.refs))
        # Also when the write was found done ("none": a redelivery, or a replay of a write whose
        # answer was lost): the fact is how triage's ledger learns it. Its event id is the same
        # for every delivery of the decision (``ctx.child``), so consumers take it once.
        ctx.emit(contracts.FEEDBACK, ctx.child(TASK_WRITTEN, await self._written_fact(client, d, outcome)))

    @staticmethod
    async def _written_fact(client, d: dict, outcome) -> dict:
        note_time = d.get("noteTime") if "noteTime" in d else await _note_time(client, d["document"])
        task = outcome.task
        action = outcome.action if outcome.action != "none" else (
            "created" if vigiltasks.decision_ids(task)[:1] == [d["decisionId"]] else "updated")
        return {"decisionId": d["decisionId"], "patient": d["patient"], "kind": d["kind"],
                "category": d["category"], "grade": d.get("grade"), "action": action,
                "task": {"id": task["id"], "versionId": str(task["meta"]["versionId"])},
                "owner": d.get("owner"), "noteTime": _rfc3339(note_time), "engineVersion": d["engineVersion"],
                "writtenTime": _rfc3339(task["meta"].get("lastUpdated")) or
                datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                "refs": outcome.refs}


async def _note_time(client, doc: dict) -> str | None:
    """An older decision event (before ``noteTime``): the note's time from the EHR."""
    try:
        note = await (client.vread("DocumentReference", doc["id"], doc["versionId"]) if doc.get("versionId")
                      else client.read("DocumentReference", doc["id"]))
    except NotFoundError:
        return None
    return note.get("date") or (note.get("meta") or {}).get("lastUpdated")


def _rfc3339(value: str | None) -> str | None:
    """FHIR dateTime -> RFC 3339 date-time (a date-only note time becomes midnight UTC)."""
    if not value:
        return None
    if len(value) == 10:
        return value + "T00:00:00Z"
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).isoformat()
    except ValueError:
        return None
