"""The stream processor: one faust agent over every tenant's findings, actions and feedback.

State (faust tables, in memory, changelogged to ``<app id>-<table>-changelog``):

- ``counts``: tumbling windows (``window_s``) of every ``facts.Count`` per
  (tenant, metric, category, version);
- ``actions``: hopping windows (``override_window_days`` long, one-day step) of accepted and
  overridden counts per (tenant, category, version), plus the tenant total (``*``/``*``);
- ``tta``: tumbling windows of time-to-alert samples (seconds) per (tenant, category, version);
- ``joins``: decision id -> model version (``d|``), Task id -> [category, version, action] (``t|``).

Windows follow event time (the CloudEvents ``time`` attribute), so a replay lands in the
windows it belongs to. The tenant comes from the topic name, never from the payload; an event
whose ``tenant`` extension disagrees with its topic, or that fails its schema, is counted in
``vigil_monitor_rejected_total`` and skipped.

Window values are upserted into ``monitor_windows`` every ``flush_s`` (a replay converges);
Task rows and clinician actions are written inline, before the event is acknowledged.
"""
from __future__ import annotations

import time
from collections import defaultdict
from datetime import datetime, timezone

from services.core import schemas
from services.core.errors import ValidationError
from services.core.events import Event, decode
from services.core.logging import get_logger
from services.core.tenancy import TenantError, tenant_of_topic
from services.monitor import alerts, facts, metrics
from services.monitor.config import MonitorSettings
from services.monitor.stats import percentile, rate
from services.monitor.store import Alert, MonitorStore, WindowRow

log = get_logger("vigil.monitor")
SEP = "\x1f"
ALL = "*"
#: At most this many time-to-alert samples per window and key are kept for the quantiles.
TTA_SAMPLES_MAX = 5000
PENDING = "pending"


def headers_of(message) -> list[tuple[str, bytes]]:
    headers = message.headers or []
    return list(headers.items()) if isinstance(headers, dict) else list(headers)


def event_time(fevent) -> float:
    """Window timestamp of a faust event: its CloudEvents ``time`` header, else the record's."""
    for name, raw in headers_of(fevent.message):
        if name == "ce_time" and raw:
            parsed = facts.parse_time(raw.decode("utf-8", "replace"))
            if parsed is not None:
                return parsed.timestamp()
    return fevent.message.timestamp


class Processor:
    def __init__(self, ms: MonitorSettings, store: MonitorStore, counts, actions, tta, joins):
        self.ms, self.store = ms, store
        self.counts, self.actions, self.tta, self.joins = counts, actions, tta, joins
        self.dirty: dict[str, dict[tuple, float]] = defaultdict(dict)
        self.watermark: dict[str, datetime] = {}
        self.last_event = self.last_flush = time.monotonic()
        #: (topic, partition) -> next offset to process, for the lag the liveness probe looks at
        self.positions: dict[tuple[str, int], int] = {}
        self.handlers = {facts.FINDINGS: self.findings, facts.DECISION: self.decision,
                         facts.TASK_WRITTEN: self.task_written, facts.TASK_UPDATED: self.task_updated}

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
        metrics.EVENTS.labels(tenant, event.type).inc()
        when = event.time if event.time.tzinfo else event.time.replace(tzinfo=timezone.utc)
        if tenant not in self.watermark or when > self.watermark[tenant]:
            self.watermark[tenant] = when
        if handler is not None:
            await handler(tenant, event)

    def count(self, tenant: str, c: facts.Count) -> None:
        key = SEP.join((tenant, c.metric, c.category, c.version))
        self.counts[key] += c.amount
        start = self.counts.table.window.current(self.counts.get_timestamp())[0]
        value = self.counts[key].value()
        self.dirty[tenant][(start, c.metric, c.category, c.version)] = value
        metrics.WINDOW_VALUE.labels(tenant, c.category, c.version, c.metric).set(value)

    async def findings(self, tenant: str, event: Event) -> None:
        counts = facts.findings_counts(event.data)
        for c in counts:
            self.count(tenant, c)
            if c.metric == "notes":
                metrics.NOTES.labels(tenant, c.version).inc()
            elif c.metric == "findings":
                metrics.FINDINGS.labels(tenant, c.category, c.version).inc()
            elif c.metric.startswith("grade:"):
                metrics.GRADES.labels(tenant, c.category, c.version, c.metric[6:]).inc()

    async def decision(self, tenant: str, event: Event) -> None:
        decision_id, version, counts = facts.decision_counts(event.data)
        self.joins[SEP.join(("d", tenant, decision_id))] = version
        for c in counts:
            self.count(tenant, c)
            metrics.DECISIONS.labels(tenant, c.category, version, c.metric.split(":", 1)[1]).inc()

    async def task_written(self, tenant: str, event: Event) -> None:
        t = facts.task_written(event.data)
        if t is None:
            metrics.REJECTED.labels(tenant, "written_time").inc()
            return
        version = self.joins.get(SEP.join(("d", tenant, t.decision_id))) or facts.UNKNOWN
        task_key = SEP.join(("t", tenant, t.task_id))
        known = self.joins.get(task_key)
        if not t.created:
            self.count(tenant, facts.Count("tasks_updated", t.category, version))
            if known is None:
                self.joins[task_key] = [t.category, version, None]
            return
        pending = known[3:] if known and known[2] == PENDING else None
        if known is None or known[2] in (None, PENDING):
            self.joins[task_key] = [t.category, version, None]
        self.count(tenant, facts.Count("tasks_created", t.category, version))
        self.count(tenant, facts.Count(f"tasks_created:{t.kind}", t.category, version))
        metrics.TASKS.labels(tenant, t.category, version, "created").inc()
        seconds = t.tta_seconds
        if seconds is not None:
            metrics.TIME_TO_ALERT.labels(tenant, t.category, version).observe(seconds)
            key = SEP.join((tenant, t.category, version))
            if len(self.tta[key].value()) < TTA_SAMPLES_MAX:
                self.tta[key] += [seconds]
            samples = self.tta[key].value()
            for name, q in (("p50", 50), ("p95", 95)):
                metrics.TTA_QUANTILE.labels(tenant, t.category, version, name).set(percentile(samples, q))
        await self.store.task_written(tenant, t, version)
        if pending:  # the clinician's action was consumed before the Task (replay): join it now
            action, reason, when = pending
            await self.apply_action(tenant, facts.TaskAction(t.task_id, action, reason, facts.parse_time(when)),
                                    t.category, version)

    async def task_updated(self, tenant: str, event: Event) -> None:
        a = facts.task_action(event.data)
        if a is None:
            return
        task_key = SEP.join(("t", tenant, a.task_id))
        known = self.joins.get(task_key)
        if known is None:
            # feedback and actions are different topics: on a replay the action can come first;
            # it waits here (the row in PostgreSQL gets its category when the Task arrives)
            self.joins[task_key] = [None, None, PENDING, a.action, a.reason, a.time.isoformat()]
            await self.store.task_action(tenant, a, facts.UNKNOWN, facts.UNKNOWN, self.reason_of(a))
            return
        if known[2] is not None:
            return  # only the first clinician action of a Task counts
        await self.apply_action(tenant, a, known[0], known[1])

    def reason_of(self, a: facts.TaskAction) -> str | None:
        return self.ms.reason_label(a.reason) if a.action == "overridden" else None

    async def apply_action(self, tenant: str, a: facts.TaskAction, category: str, version: str) -> None:
        self.joins[SEP.join(("t", tenant, a.task_id))] = [category, version, a.action]
        reason = self.reason_of(a)
        self.count(tenant, facts.Count(a.action, category, version))
        metrics.TASKS.labels(tenant, category, version, a.action).inc()
        if reason is not None:
            self.count(tenant, facts.Count(f"override_reason:{reason}", category, version))
            metrics.OVERRIDE_REASONS.labels(tenant, category, version, reason).inc()
        await self.store.task_action(tenant, a, category, version, reason)
        for c, v in ((category, version), (ALL, ALL)):
            base = SEP.join((tenant, c, v))
            self.actions[f"{base}{SEP}{a.action}"] += 1
            accepted, overridden = self.trailing(f"{base}{SEP}accepted"), self.trailing(f"{base}{SEP}overridden")
            value = rate(overridden, accepted + overridden)
            metrics.OVERRIDE_RATE.labels(tenant, c, v).set(value or 0.0)
            await self.check_override(tenant, c, v, value, accepted + overridden, a.time)

    def trailing(self, key: str) -> float:
        """The hopping window that *ends* with the current event: the last ``override_window_days``."""
        window = self.actions.table.window.earliest(self.actions.get_timestamp())
        return self.actions[key][window]

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
        """Window values to PostgreSQL; Tasks past the ignore threshold are marked ignored."""
        self.last_flush = time.monotonic()
        dirty, self.dirty = self.dirty, defaultdict(dict)
        for tenant, values in dirty.items():
            rows = [WindowRow(self.ms.window_s, datetime.fromtimestamp(start, timezone.utc), metric, category,
                              version, value) for (start, metric, category, version), value in values.items()]
            try:
                await self.store.upsert_windows(tenant, rows)
            except Exception as exc:  # keep the values for the next flush; newer values win
                for key, value in values.items():
                    self.dirty[tenant].setdefault(key, value)
                log.error("monitor.flush_failed", tenant=tenant, error_type=type(exc).__name__)
                continue
            metrics.FLUSHED.labels(tenant).inc(len(rows))
        for tenant, now in list(self.watermark.items()):
            for category, version in await self.store.mark_ignored(tenant, now, self.ms.ignored_after_s):
                metrics.TASKS.labels(tenant, category, version, "ignored").inc()

    def health(self, stall_s: float, highwater=None) -> dict:
        """Live while the flush loop runs and, when records wait on a partition we consume, events
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
