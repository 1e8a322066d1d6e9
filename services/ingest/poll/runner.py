"""Polling rounds: one task per tenant whose profile has the ``patient-poll`` trigger.

A round: rebuild the checkpoint-inhibitor list when it is due, read the watched patients and
their cursors, poll them with ``poll_concurrency`` workers that share the tenant's token bucket,
record the round. The next round starts ``poll_interval_s`` after this one started (at once if
the round took longer). A patient whose poll fails (404, 403, 429, 5xx, a timeout) is recorded
with its error code and retried next round; a 429's Retry-After empties the tenant's bucket for
that long. Tenants never share a task, a bucket or a worker, so a slow EHR slows only its tenant.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import timedelta

from services.core.config import ConfigError
from services.core.errors import RetryableError, classify
from services.core.logging import get_logger
from services.ingest.liveness import task_problem
from services.ingest.poll import metrics
from services.ingest.poll.bucket import TokenBucket
from services.ingest.poll.patient import poll_patient
from services.ingest.poll.settings import PollSettings
from services.ingest.poll.watchlist import PATIENT_SCOPED_FAMILIES, checkpoint_inhibitor_patients
from services.ingest.store import polling

log = get_logger("ingest.poll")
TRIGGER = "patient-poll"
#: A failed watch-list refresh is tried again after this long (not at every round): 60 s.
REFRESH_RETRY_S = 60.0


@dataclass
class RoundReport:
    patients: int = 0
    requests: int = 0
    published: int = 0
    duplicates: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    refreshed: int | None = None
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        return sum(self.errors.values())


def check_tenant(tenant) -> PollSettings:
    """The tenant's polling settings; ConfigError naming the setting when they cannot be honoured."""
    settings = PollSettings.from_tenant(tenant)
    profile = tenant.integration
    if profile.watch_list == "checkpoint-inhibitors" and profile.family in PATIENT_SCOPED_FAMILIES:
        raise ConfigError(f"tenant {tenant.id}: integration.watch_list = 'checkpoint-inhibitors' needs a system-wide "
                          f"MedicationRequest search, which a {profile.family} EHR refuses (it requires a patient): "
                          "use watch_list = 'uploaded' and `vigil poll watchlist upload`")
    return settings


class TenantPoller:
    def __init__(self, tenant, settings: PollSettings, pools, publishers, ehr_for):
        self.tenant, self.settings = tenant, settings
        self.pools, self.publishers, self.ehr_for = pools, publishers, ehr_for
        self.bucket = TokenBucket(settings.rate_per_s, settings.burst)
        self._next_refresh = 0.0  # monotonic; 0: at the first round

    async def refresh_watch_list(self) -> int:
        """Rebuild the checkpoint-inhibitor list (``uploaded`` lists change only by upload)."""
        ehr = await self.ehr_for(self.tenant.id)
        try:
            found = await checkpoint_inhibitor_patients(ehr, self.bucket, text=self.settings.watch_text)
        except Exception as exc:
            code = classify(exc).code
            metrics.ERRORS.labels(tenant=self.tenant.id, code=code).inc()
            log.warning("poll.watch_refresh_failed", tenant=self.tenant.id, error_code=code)
            async with self.pools.tx(self.tenant.id) as conn:
                await polling.watch_refreshed(conn, self.tenant.id, code)
            raise
        async with self.pools.tx(self.tenant.id) as conn:
            await polling.list_patients(conn, self.tenant.id, found, timedelta(days=self.settings.watch_keep_days))
            await polling.watch_refreshed(conn, self.tenant.id, None)
        log.info("poll.watch_refreshed", tenant=self.tenant.id, patients=len(found))
        return len(found)

    async def _poll_one(self, watched: polling.Watched, ehr, report: RoundReport) -> None:
        t = self.tenant.id
        metrics.POLLS.labels(tenant=t).inc()
        try:
            result = await poll_patient(t, watched, ehr, self.bucket, self.pools, self.publishers, self.settings)
        except Exception as exc:
            err = classify(exc)
            report.errors[err.code] = report.errors.get(err.code, 0) + 1
            metrics.ERRORS.labels(tenant=t, code=err.code).inc()
            if isinstance(err, RetryableError) and err.retry_after:
                self.bucket.hold(err.retry_after)
            log.warning("poll.patient_failed", tenant=t, error_code=err.code, retryable=err.retryable)
            try:
                async with self.pools.tx(t) as conn:
                    await polling.failed(conn, t, watched.patient_id, err.code)
            except Exception as db_exc:  # the round goes on; the failure is counted above
                log.warning("poll.record_failed", tenant=t, error_code=classify(db_exc).code)
            return
        report.requests += result.requests
        report.published += result.published
        report.duplicates += result.duplicates
        metrics.REQUESTS.labels(tenant=t).inc(result.requests)
        metrics.NOTES.labels(tenant=t).inc(result.published)
        metrics.DUPLICATES.labels(tenant=t).inc(result.duplicates)

    async def run_round(self) -> RoundReport:
        t, started = self.tenant.id, time.monotonic()
        report = RoundReport()
        if self.tenant.integration.watch_list == "checkpoint-inhibitors" and started >= self._next_refresh:
            try:
                report.refreshed = await self.refresh_watch_list()
                self._next_refresh = started + self.settings.watch_refresh_s
            except Exception:  # logged by refresh_watch_list; the current list is polled meanwhile
                self._next_refresh = started + min(REFRESH_RETRY_S, self.settings.watch_refresh_s)
        async with self.pools.tx(t) as conn:
            await polling.round_started(conn, t)
            watched = await polling.watched(conn, t)
        report.patients = len(watched)
        metrics.WATCHED.labels(tenant=t).set(len(watched))
        if watched:
            ehr = await self.ehr_for(t)
            queue = list(reversed(watched))

            async def worker() -> None:
                while queue:
                    await self._poll_one(queue.pop(), ehr, report)

            await asyncio.gather(*(worker() for _ in range(min(self.settings.concurrency, len(watched)))))
        report.seconds = time.monotonic() - started
        async with self.pools.tx(t) as conn:
            await polling.round_finished(conn, t, patients=report.patients, requests=report.requests,
                                         notes=report.published, errors=report.failed)
        metrics.ROUNDS.labels(tenant=t).inc()
        metrics.ROUND_SECONDS.labels(tenant=t).set(report.seconds)
        metrics.LAST_ROUND.labels(tenant=t).set(time.time())
        log.info("poll.round", tenant=t, patients=report.patients, requests=report.requests,
                 published=report.published, duplicates=report.duplicates, errors=report.failed,
                 seconds=round(report.seconds, 3))
        return report

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                await self.run_round()
            except Exception as exc:  # the database or the broker: the next round tries again
                code = classify(exc).code
                metrics.ERRORS.labels(tenant=self.tenant.id, code=code).inc()
                log.warning("poll.round_failed", tenant=self.tenant.id, error_code=code)
            wait = self.settings.interval_s - (time.monotonic() - started)
            if wait > 0:
                try:
                    await asyncio.wait_for(stop.wait(), wait)
                except asyncio.TimeoutError:
                    pass


class PollRunner:
    """The pollers of every tenant with the ``patient-poll`` trigger; settings checked on creation."""

    def __init__(self, registry, pools, publishers, ehr_for):
        self.pollers = [TenantPoller(t, check_tenant(t), pools, publishers, ehr_for)
                        for t in registry if t.integration.has_trigger(TRIGGER)]
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self._stop.clear()
        self._tasks = [asyncio.create_task(p.run(self._stop), name=f"ingest-poll-{p.tenant.id}")
                       for p in self.pollers]

    def problem(self) -> str | None:
        """For liveness: every tenant's poller task runs."""
        for task in self._tasks:
            found = task_problem(task, f"poller {task.get_name().removeprefix('ingest-poll-')}")
            if found:
                return found
        return None

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
