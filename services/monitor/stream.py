"""The stream processor: one faust agent over every monitored tenant's findings, actions and feedback.

Exactly once, by event id: each event is handled in one PostgreSQL transaction (the tenant's
``TenantPools`` unit of work) that first records it in ``monitor_events``
(``MonitorStore.claim``). An event id already there is a redelivery (a producer retry, a
consumer restart before its offset was committed, a replay): it is counted in
``vigil_monitor_duplicates_total`` and changes nothing else. Otherwise, in the same transaction,
its counts are added to their tumbling windows (``monitor_windows``, ``window_s``, by event
time) and its Task row is written (``monitor_tasks``). No state lives in the worker's memory
that a restart could lose or double: the joins (a decision's model version for its Task, a
Task's category for the clinician's action) are read from those tables.

Windows follow event time (the CloudEvents ``time`` attribute), so a replay lands in the windows
it belongs to. The tenant comes from the topic name, never from the payload; an event whose
``tenant`` extension disagrees with its topic, that fails its schema, or whose tenant is not
monitored (any more) is counted in ``vigil_monitor_rejected_total`` and skipped.

Clinician actions: only the first action on a Task counts. Writeback's task-written and the
clinicians' answers share ``feedback`` (in order per patient), but an action may still come
first (a replayed task-written, a Task someone else created): it is kept on a Task row without a
written time and counted when the Task arrives.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable

from services.core import schemas
from services.core.errors import ValidationError, classify
from services.core.events import Event, decode
from services.core.logging import get_logger
from services.core.tenancy import TenantError, tenant_of_topic
from services.core import evidence
from services.core.crypto import Keyring
from services.monitor import alerts, facts, feedback, labels, metrics
from services.monitor.config import MonitorSettings
from services.monitor.stats import percentile, rate
from services.monitor.store import Alert, EventRow, MonitorStore, WindowRow

log = get_logger("vigil.monitor")
ALL = "*"
#: A retryable store error (PostgreSQL busy or restarting) is retried after 0.5 s, doubling up to
#: 30 s, without end: the event is not acknowledged meanwhile, so it is never lost; /healthz turns
#: 503 once no event completed for its stall window, and a restarted worker resumes at this event.
#: Retrying is safe because the event id is claimed in the same transaction as its effects.
RETRY_FIRST_S, RETRY_MAX_S = 0.5, 30.0


def headers_of(message) -> list[tuple[str, bytes]]:
    headers = message.headers or []
    return list(headers.items()) if isinstance(headers, dict) else list(headers)


def window_start(when: datetime, window_s: int) -> datetime:
    """Start of the tumbling window (aligned to the epoch) that holds ``when``."""
    ts = when.timestamp()
    return datetime.fromtimestamp(ts - ts % window_s, timezone.utc)


@dataclass
class Unit:
    """One event's work inside its transaction; ``after`` runs once it committed (metrics, alerts)."""
    tenant: str
    event: Event
    when: datetime
    counts: list[facts.Count] = field(default_factory=list)
    after: list[Callable] = field(default_factory=list)
    override_checks: list[tuple[str, str]] = field(default_factory=list)


class Processor:
    def __init__(self, ms: MonitorSettings, store: MonitorStore, tenants: set[str] | None = None):
        self.ms, self.store = ms, store
        #: the tenants monitored now (None: every tenant whose topics reach the agent)
        self.tenants = tenants
        self.watermark: dict[str, datetime] = {}
        self.last_event = self.last_flush = time.monotonic()
        #: (topic, partition) -> next offset to process, for the lag the liveness probe looks at
        self.positions: dict[tuple[str, int], int] = {}
        self.handlers = {facts.FINDINGS: self.findings, facts.DECISION: self.decision,
                         facts.TASK_WRITTEN: self.task_written, facts.TASK_UPDATED: self.task_updated,
                         feedback.CDS_FEEDBACK: self.card_feedback}
        self.keyring = Keyring(store.pools, store.pools.secrets)

    # -- per event -----------------------------------------------------------------------------
    async def handle(self, fevent) -> None:
        self.last_event = time.monotonic()
        message = fevent.message
        self.positions[(message.topic, message.partition)] = message.offset + 1
        try:
            tenant = tenant_of_topic(message.topic)
        except TenantError:
            metrics.REJECTED.labels("unknown", "topic").inc()
            return
        if self.tenants is not None and tenant not in self.tenants:
            metrics.REJECTED.labels(tenant, "not_monitored").inc()
            return
        try:
            event = decode(message.key, message.value, headers_of(message))
            if event.tenant != tenant:
                raise ValidationError("tenant extension does not match the topic", code="tenant_mismatch")
            handler = self.handlers.get(event.type)
            if handler is not None:
                schemas.validate(event.type, event.data)
        except ValidationError as exc:
            metrics.REJECTED.labels(tenant, exc.code or "invalid").inc()
            log.warning("monitor.event_rejected", tenant=tenant, reason=exc.code, topic=message.topic,
                        offset=message.offset)
            return
        when = event.time if event.time.tzinfo else event.time.replace(tzinfo=timezone.utc)
        if handler is None:
            metrics.EVENTS.labels(tenant, event.type).inc()
            return
        unit, attempt = Unit(tenant, event, when), 0
        while True:
            try:
                counted = await self.process(unit, handler)
                break
            except Exception as exc:  # noqa: BLE001  (classified: retried or counted and logged)
                err = classify(exc)
                if not err.retryable:
                    metrics.REJECTED.labels(tenant, f"store_{err.code}").inc()
                    log.error("monitor.event_failed", tenant=tenant, event_id=event.id, error_type=type(exc).__name__,
                              code=err.code)
                    return
                delay = min(RETRY_MAX_S, RETRY_FIRST_S * 2 ** attempt)
                attempt += 1
                log.warning("monitor.store_retry", tenant=tenant, event_id=event.id, attempt=attempt,
                            error_type=type(exc).__name__, delay_s=delay)
                await asyncio.sleep(delay)
                unit = Unit(tenant, event, when)
        if tenant not in self.watermark or when > self.watermark[tenant]:
            self.watermark[tenant] = when  # the tenant's stream clock: events its store accepted
        if counted:
            await self.after_commit(unit)

    async def process(self, unit: Unit, handler) -> bool:
        """Claim the event id and apply ``handler`` in one transaction; False for a duplicate.
        Window gauges are set here; ``after_commit`` does the rest."""
        row = self.row(unit)
        if row is None:
            return False
        async with self.store.pools.tx(unit.tenant) as conn:
            if not await self.store.claim(conn, unit.tenant, row):
                metrics.DUPLICATES.labels(unit.tenant, unit.event.type).inc()
                return False
            await handler(unit, conn)
            start = window_start(unit.when, self.ms.window_s)
            values = await self.store.add_to_windows(conn, unit.tenant, [
                WindowRow(self.ms.window_s, start, c.metric, c.category, c.version, c.amount) for c in unit.counts])
        metrics.EVENTS.labels(unit.tenant, unit.event.type).inc()
        for (metric, category, version), value in values.items():
            metrics.WINDOW_VALUE.labels(unit.tenant, category, version, metric).set(value)
        return True

    async def after_commit(self, unit: Unit) -> None:
        """Counters, then the override-rate gauge and alert (read back from the committed rows). A
        failure of the latter is logged, not retried: the event is counted; the next action re-checks."""
        for step in unit.after:
            step()
        try:
            for category, version in unit.override_checks:
                await self.override_rate(unit.tenant, category, version)
        except Exception as exc:  # noqa: BLE001  (logged with its class; the counts are committed)
            log.error("monitor.override_check_failed", tenant=unit.tenant, event_id=unit.event.id,
                      error_type=type(exc).__name__, code=classify(exc).code)

    def row(self, unit: Unit) -> EventRow | None:
        """The ``monitor_events`` row of the event (what the report's figures are computed from)."""
        e, data = unit.event, unit.event.data
        version = (facts.code(data.get("engineVersion")) if data.get("engineVersion") else facts.UNKNOWN)
        if e.type == facts.FINDINGS:
            doc = data["document"]
            found = data.get("findings") or []
            return EventRow(e.id, e.type, unit.when, document=f"{doc['id']}/{doc.get('versionId', '')}",
                            category=",".join(sorted({facts.code(f.get("category")) for f in found})) or None,
                            version=version, findings=len(found))
        if e.type == facts.DECISION:
            doc = data.get("document") or {}
            return EventRow(e.id, e.type, unit.when, document=f"{doc.get('id')}/{doc.get('versionId', '')}",
                            decision_id=data["decisionId"], category=facts.code(data.get("category")),
                            version=version, kind=facts.code(data.get("kind")))
        if e.type == facts.TASK_WRITTEN:
            if facts.parse_time(data.get("writtenTime")) is None:
                metrics.REJECTED.labels(unit.tenant, "written_time").inc()
                return None
            return EventRow(e.id, e.type, unit.when, decision_id=data["decisionId"], task_id=data["task"]["id"],
                            category=facts.code(data["category"]), kind=facts.code(data.get("action")))
        if e.type == facts.TASK_UPDATED:
            return EventRow(e.id, e.type, unit.when, task_id=data["task"]["id"], kind=facts.code(data.get("status")))
        if e.type == feedback.CDS_FEEDBACK:
            return EventRow(e.id, e.type, unit.when, task_id=data.get("task"), kind=data["outcome"],
                            category=facts.code(data.get("category")) if data.get("category") else None)
        return None

    async def findings(self, unit: Unit, conn) -> None:
        t = unit.tenant
        for c in facts.findings_counts(unit.event.data):
            unit.counts.append(c)
            if c.metric == "notes":
                unit.after.append(metrics.NOTES.labels(t, c.version).inc)
            elif c.metric == "findings":
                unit.after.append(metrics.FINDINGS.labels(t, c.category, c.version).inc)
            elif c.metric.startswith("grade:"):
                unit.after.append(metrics.GRADES.labels(t, c.category, c.version, c.metric[6:]).inc)

    async def decision(self, unit: Unit, conn) -> None:
        _, version, counts = facts.decision_counts(unit.event.data)
        for c in counts:
            unit.counts.append(c)
            unit.after.append(metrics.DECISIONS.labels(unit.tenant, c.category, version, c.metric.split(":", 1)[1]).inc)

    async def task_written(self, unit: Unit, conn) -> None:
        t, tenant = facts.task_written(unit.event.data), unit.tenant
        version = t.version or await self.store.decision_version(conn, tenant, t.decision_id) or facts.UNKNOWN
        if not t.created:
            unit.counts.append(facts.Count("tasks_updated", t.category, version))
            return
        known = await self.store.task_row(conn, tenant, t.task_id)
        if known is not None and known["written_time"] is not None:
            return  # another event already created this Task (a second task-written with another id)
        await self.store.task_written(tenant, t, version, conn)
        unit.counts += [facts.Count("tasks_created", t.category, version),
                        facts.Count(f"tasks_created:{t.kind}", t.category, version)]
        unit.after.append(metrics.TASKS.labels(tenant, t.category, version, "created").inc)
        seconds = t.tta_seconds
        if seconds is not None:
            unit.after.append(lambda: metrics.TIME_TO_ALERT.labels(tenant, t.category, version).observe(seconds))
            start = window_start(t.written_time, self.ms.window_s)
            samples = await self.store.tta_samples(conn, tenant, t.category, version, start,
                                                   start + timedelta(seconds=self.ms.window_s))
            for name, q in (("p50", 50), ("p95", 95)):
                unit.after.append(lambda name=name, value=percentile(samples, q):
                                  metrics.TTA_QUANTILE.labels(tenant, t.category, version, name).set(value))
        if known is not None and known["action"]:  # the action was consumed before the Task: count it now
            await self.count_action(unit, facts.TaskAction(t.task_id, known["action"], known["reason"],
                                                           known["action_time"]), t.category, version, conn,
                                    reason=known["reason"])

    async def task_updated(self, unit: Unit, conn) -> None:
        data = unit.event.data
        known = await self.store.task_row(conn, unit.tenant, data["task"]["id"])
        for label in feedback.task_labels(data, known):
            if await labels.insert(conn, unit.tenant, label):
                unit.after.append(metrics.LABELS.labels(unit.tenant, label.source, label.action).inc)
        a = facts.task_action(data)
        if a is None:
            return
        if known is not None and known["action"] is not None:
            return  # only the first clinician action of a Task counts
        await self.store.task_action(unit.tenant, a, known["category"] if known else facts.UNKNOWN,
                                     known["version"] if known else facts.UNKNOWN, self.reason_of(a), conn)
        if known is not None and known["written_time"] is not None:
            await self.count_action(unit, a, known["category"], known["version"], conn, reason=self.reason_of(a))

    async def card_feedback(self, unit: Unit, conn) -> None:
        """A CDS Hooks card's answer: its labels (the Task's own counts come from the inbox's task-updated)."""
        data = unit.event.data
        comment = (await evidence.open_text(self.keyring, unit.tenant, data["commentSealed"])
                   if data.get("commentSealed") else None)
        for label in feedback.card_labels(data, comment):
            if await labels.insert(conn, unit.tenant, label):
                unit.after.append(metrics.LABELS.labels(unit.tenant, label.source, label.action).inc)

    def reason_of(self, a: facts.TaskAction) -> str | None:
        return self.ms.reason_label(a.reason) if a.action == "overridden" else None

    async def count_action(self, unit: Unit, a: facts.TaskAction, category: str, version: str, conn, *,
                           reason: str | None) -> None:
        tenant = unit.tenant
        unit.counts.append(facts.Count(a.action, category, version))
        unit.after.append(metrics.TASKS.labels(tenant, category, version, a.action).inc)
        if reason is not None:
            unit.counts.append(facts.Count(f"override_reason:{reason}", category, version))
            unit.after.append(metrics.OVERRIDE_REASONS.labels(tenant, category, version, reason).inc)
        unit.override_checks += [(category, version), (ALL, ALL)]

    async def override_rate(self, tenant: str, category: str, version: str) -> None:
        """The override rate over the ``override_window_days`` ending at the tenant's newest action."""
        counts, newest = await self.store.trailing_actions(tenant, self.ms.override_window_days,
                                                           None if category == ALL else category,
                                                           None if version == ALL else version)
        accepted, overridden = counts.get("accepted", 0), counts.get("overridden", 0)
        value = rate(overridden, accepted + overridden)
        metrics.OVERRIDE_RATE.labels(tenant, category, version).set(value or 0.0)
        if newest is not None:
            await self.check_override(tenant, category, version, value, accepted + overridden, newest)

    async def check_override(self, tenant: str, category: str, version: str, value: float | None, n: float,
                             when: datetime) -> None:
        dimension = f"{category}/{version}"
        if value is None or n < self.ms.override_min_actions:
            return
        if value > self.ms.override_rate_max:
            await alerts.raise_alert(self.store, tenant, Alert(
                id=f"override-rate:{dimension}:{when.date().isoformat()}", kind="override-rate", dimension=dimension,
                value=value, threshold=self.ms.override_rate_max, period_end=when,
                details={"actions": n, "window_days": self.ms.override_window_days}))
        else:
            alerts.clear(tenant, "override-rate", dimension)

    # -- periodic ------------------------------------------------------------------------------
    async def flush(self) -> None:
        """Tasks past the ignore threshold (by each tenant's stream time) are marked ignored."""
        self.last_flush = time.monotonic()
        for tenant, now in list(self.watermark.items()):
            if self.tenants is not None and tenant not in self.tenants:
                continue
            try:
                marked = await self.store.mark_ignored(tenant, now, self.ms.ignored_after_s)
            except Exception as exc:  # noqa: BLE001  (one tenant's store must not stop the others' sweep)
                log.error("monitor.sweep_failed", tenant=tenant, error_type=type(exc).__name__,
                          code=classify(exc).code)
                continue
            for category, version in marked:
                metrics.TASKS.labels(tenant, category, version, "ignored").inc()

    def health(self, stall_s: float, highwater=None) -> dict:
        """Live while the sweep loop runs and, when records wait on a partition we consume, events
        were processed within ``stall_s`` (``highwater(topic, partition)`` -> int or None)."""
        now = time.monotonic()
        lag = 0
        if highwater is not None:
            for (topic, partition), position in self.positions.items():
                hw = highwater(topic, partition)
                lag += max(0, (hw or 0) - position)
        flushing = now - self.last_flush < stall_s
        stalled = lag > 0 and now - self.last_event >= stall_s
        return {"live": flushing and not stalled, "lag": lag, "since_flush_s": round(now - self.last_flush, 3),
                "since_event_s": round(now - self.last_event, 3), "tenants": sorted(self.watermark)}
