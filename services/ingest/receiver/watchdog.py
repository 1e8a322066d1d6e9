"""Heartbeat watchdog: a subscription that went quiet is asked for its ``$status``.

Every ``CHECK_INTERVAL_S`` each known subscription whose last heartbeat or notification is
older than ``heartbeat period x MISSED_BEATS`` is checked: an ``error``/``off`` status is
repaired by asking the EHR to handshake again (status -> requested), and events the EHR
counted but we never received (``events-since-subscription-start`` beyond our last
number) are recovered like any gap. A subscription the EHR no longer has (deleted, replaced by
``vigil subscribe``) is marked ``gone`` once, with one log line, and is not asked again until a
notification names it; one subscription's trouble never stops the tenant's other checks.

Classic R4 criteria subscriptions have no ``$status`` and no event numbers: for a tenant whose
profile has the ``r4-criteria`` trigger, every round runs the ``_lastUpdated`` catch-up search of
each R4 type (services.ingest.receiver.r4), which finds what a lost notification did not bring.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone

from services.core.errors import NotFoundError, classify
from services.core.logging import get_logger
from services.ingest.liveness import STALL_ROUNDS, STALL_SLACK_S, task_problem
from services.ingest.receiver.handler import NotificationHandler
from services.ingest.receiver.notification import BadNotification, parse_notification
from services.ingest.receiver.r4 import STATE_PREFIX, TRIGGER as R4_TRIGGER, R4Notifications
from services.ingest.store import subscriptions as substore

log = get_logger("ingest.watchdog")
CHECK_INTERVAL_S = 30.0
DEFAULT_HEARTBEAT_S = 60.0
MISSED_BEATS = 2  # silent for 2 heartbeat periods (120 s by default) -> ask $status
REPAIRABLE = ("error", "off")
GONE = "gone"  # the EHR answered 404 for it: not checked until a notification names it again


class Watchdog:
    def __init__(self, registry, pools, handler: NotificationHandler, ehr_for, *,
                 heartbeat_s: float = DEFAULT_HEARTBEAT_S, interval_s: float = CHECK_INTERVAL_S):
        self.registry, self.pools, self.handler, self.ehr_for = registry, pools, handler, ehr_for
        self.heartbeat_s, self.interval_s = heartbeat_s, interval_s
        self.r4 = R4Notifications(handler)
        self._task: asyncio.Task | None = None
        self.last_round = time.monotonic()

    def start(self) -> None:
        self.last_round = time.monotonic()
        self._task = asyncio.create_task(self._run(), name="ingest-watchdog")

    def problem(self) -> str | None:
        """For liveness: the task runs, and its last round is recent."""
        stopped = task_problem(self._task, "watchdog")
        if stopped:
            return stopped
        age = time.monotonic() - self.last_round
        return f"no round for {age:.0f} s" if age > STALL_ROUNDS * self.interval_s + STALL_SLACK_S else None

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def prime(self) -> None:
        """At start: run the R4 catch-up once, which starts each R4 type's checkpoint, so a lost first
        notification (or an empty one) is found from the moment ingest is up."""
        for tenant in self.registry:
            if tenant.integration.has_trigger(R4_TRIGGER):
                try:
                    await self.r4.catch_up_tenant(tenant.id, tenant.integration)
                except Exception as exc:  # retried every round anyway
                    log.warning("watchdog.r4_catch_up_failed", tenant=tenant.id, error_code=classify(exc).code)

    async def _run(self) -> None:
        await self.prime()
        while True:
            await asyncio.sleep(self.interval_s)
            for tenant in self.registry:
                try:
                    await self.check_tenant(tenant.id)
                except Exception as exc:  # one tenant's trouble must not stop the others' checks
                    log.warning("watchdog.tenant_failed", tenant=tenant.id, error_code=classify(exc).code)
            self.last_round = time.monotonic()

    async def check_tenant(self, tenant: str, *, now: datetime | None = None) -> list[dict]:
        now = now or datetime.now(timezone.utc)
        reports = []
        profile = self.registry.get(tenant).integration
        if profile.has_trigger(R4_TRIGGER):
            try:
                reports.extend(await self.r4.catch_up_tenant(tenant, profile))
            except Exception as exc:  # the topic-based subscriptions below are still checked
                log.warning("watchdog.r4_catch_up_failed", tenant=tenant, error_code=classify(exc).code)
        async with self.pools.tx(tenant, readonly=True) as conn:
            states = await substore.all_states(conn, tenant)
        limit = timedelta(seconds=self.heartbeat_s * MISSED_BEATS)
        for state in states:
            if state.subscription.startswith(STATE_PREFIX):  # R4 criteria: caught up above
                continue
            if state.status == GONE or (state.last_seen is not None and now - state.last_seen < limit):
                continue
            try:
                reports.append(await self.check(tenant, state.subscription))
            except Exception as exc:  # the next subscription is still checked
                log.warning("watchdog.check_failed", tenant=tenant, subscription=state.subscription,
                            error_code=classify(exc).code)
        return reports

    async def check(self, tenant: str, subscription: str) -> dict:
        """``$status`` one subscription; repair it and recover missed events. Returns a report."""
        ehr = await self.ehr_for(tenant)
        try:
            status = parse_notification(await ehr.status(subscription))
        except NotFoundError:
            log.info("watchdog.subscription_gone", tenant=tenant, subscription=subscription)
            async with self.pools.tx(tenant) as conn:
                await substore.set_status(conn, tenant, subscription, GONE)
            return {"subscription": subscription, "status": GONE, "reactivated": False, "recovered": 0}
        except BadNotification as exc:
            log.warning("watchdog.bad_status", tenant=tenant, subscription=subscription, path=exc.path[:60])
            return {"subscription": subscription, "status": "unknown", "reactivated": False, "recovered": 0}
        report = {"subscription": subscription, "status": status.status, "reactivated": False, "recovered": 0}
        if status.events_since_start is not None:
            result = await self.handler.handle(tenant, replace(status, type="query-status", events=()))
            report["recovered"] = result.recovered
        if status.status in REPAIRABLE:
            await ehr.reactivate(subscription)
            report["reactivated"] = True
            log.info("watchdog.reactivated", tenant=tenant, subscription=subscription, was=status.status)
            async with self.pools.tx(tenant) as conn:
                await substore.set_status(conn, tenant, subscription, "requested")
        return report
