"""The stage runtime: consume, handle, produce, then commit; retries, parking, dead letters.

One poll returns a batch (at most ``tuning.max_batch`` records: bounded in-flight work).
Records are grouped into lanes by partition number (input partition p and retry-topic
partition p hold the same patients, and the range assignor gives them to the same member);
lanes run concurrently, records within a lane strictly in order. A stage may split an input
partition's records further by key (``tuning.key_lanes``: ``batch.split_lanes``). Outputs, retry and
dead-letter records are queued during the lanes and handed to the producer together after
them (one produce request per broker instead of a trickle; a lane that replays parked events
sends what is queued first, so a key's outputs keep their order). Then the batch's tail -
await every produce (acks=all), then mark the ledger and commit (the offsets of finished batches
are committed at most every ``tuning.commit_interval_ms``, and on stop: ``commits``) - runs in the background while
the next batch is polled and handled (a lane yields every ``YIELD_EVERY`` events so the tail
advances meanwhile): at most two batches are in flight, tails finish in order
(a batch's tail starts only after the previous one committed), and the next batch's ledger
lookup counts the in-flight batch's events as done. A crash anywhere before a commit
redelivers from the first uncommitted offset; the ledger and deterministic output ids make
that harmless. When a tail fails on our own infrastructure, both batches are rewound.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor

from services.core import schemas
from services.core.bus import metrics, store
from services.core.bus.failures import Trail, dlq_headers, fingerprint, retry_headers, short_message, stack_text
from services.core.bus.batch import BatchState, Tail, retrieve_exception, split_lanes
from services.core.bus.commits import OffsetCommits
from services.core.bus.context import Context, Handler, StageSpec
from services.core.bus.deadline import Deadlines
from services.core.bus.intake import PASSED_OVER, Intake, due_ms
from services.core.bus.ledger import Ledger
from services.core.bus.parked import ParkedReader
from services.core.bus.quickretry import retry_quickly
from services.core.bus.publisher import Publisher
from services.core.bus.topics import dlq_topic, resolve, retry_topic
from services.core.config import Settings
from services.core.errors import classify
from services.core.events import Event, encode_parts
from services.core.logging import get_logger
from services.core.tenancy import check_tenant_id, topic_name

log = get_logger("vigil.bus")
#: A lane lets the event loop run every this many events: handlers that never wait (pure CPU)
#: would otherwise hold it for a whole batch, and the previous batch's tail (acks, ledger,
#: commit) would only advance one step per batch, between batches.
YIELD_EVERY = 50
__all__ = ["Context", "Handler", "StageRunner", "StageSpec", "run_stage"]


class StageRunner:
    """``start()``, ``run(stop_event)`` until the event is set, ``stop()``; ``health()`` any time."""

    def __init__(self, settings: Settings, tenant_id: str, spec: StageSpec, *, redis=None, pool=None):
        from services.core import kv  # local: keeps the import graph of this module small

        self.settings, self.tenant, self.spec = settings, check_tenant_id(tenant_id), spec
        self.input_topic = topic_name(self.tenant, spec.input_stream)
        self.retry_topics = [retry_topic(self.tenant, spec.name, n) for n in range(1, spec.retry.levels + 1)]
        self.publisher = Publisher(settings, self.tenant)
        self._redis = redis or kv.admin_client(settings)
        self._pool, self._own_pool = pool, pool is None
        self.ledger = Ledger(self._redis, self.tenant, spec.name, spec.tuning.ledger_ttl_s)
        self._labels = {"tenant": self.tenant, "stage": spec.name}
        self._latency = metrics.LATENCY.labels(**self._labels)
        self._consumed, self._succeeded = (metrics.CONSUMED.labels(**self._labels),
                                           metrics.SUCCEEDED.labels(**self._labels))
        self._progress, self._lag = metrics.LAST_PROGRESS.labels(**self._labels), metrics.LAG.labels(**self._labels)
        self._assigned = metrics.ASSIGNED.labels(**self._labels)
        self._topics: dict[str, str] = {}
        self._intake = Intake(self.tenant, spec.types)
        self._paused: dict[TopicPartition, float] = {}
        self._positions: dict[TopicPartition, int] = {}
        self._commits: OffsetCommits | None = None  # made with the consumer
        self._tail: Tail | None = None  # the previous batch: acks, ledger and commit still running
        self._deadlines = Deadlines(spec.tuning.handler_timeout_s)
        self._consumer: AIOKafkaConsumer | None = None
        self._parked = ParkedReader(settings, self.tenant, spec.tuning.handler_timeout_s)
        self._last_progress = time.monotonic()
        self._running = False

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        from services.core.db import create_pool, ensure_schema

        if self._pool is None:
            self._pool = await create_pool(self.settings, min_size=1, max_size=2)
        await ensure_schema(self._pool, store.MODULE, store.STEPS)
        schemas.compile_all()  # once per process; keeps the compile out of the first batch
        await self.publisher.start()
        t = self.spec.tuning
        self._consumer = AIOKafkaConsumer(
            self.input_topic, *self.retry_topics, group_id=f"vigil.{self.tenant}.{self.spec.name}",
            enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=t.max_batch,
            session_timeout_ms=t.session_timeout_ms, heartbeat_interval_ms=t.heartbeat_interval_ms,
            rebalance_timeout_ms=t.rebalance_timeout_ms, max_poll_interval_ms=t.max_poll_interval_ms,
            fetch_max_wait_ms=t.fetch_max_wait_ms,
            partition_assignment_strategy=(RangePartitionAssignor,), **self.settings.kafka.client_kwargs(self.tenant))
        await self._consumer.start()
        self._commits = OffsetCommits(self._consumer, t.commit_interval_ms, stage=self.spec.name, tenant=self.tenant)
        self._running, self._last_progress = True, time.monotonic()

    async def stop(self) -> None:
        """Leave the group and flush. Call after ``run`` returned: the last batch is committed."""
        self._running = False
        if self._consumer is not None:
            await self._consumer.stop()
        await self._parked.stop()
        await self.publisher.stop()
        if self._own_pool and self._pool is not None:
            await self._pool.close()

    def resolve(self, stream: str) -> str:
        """The tenant's topic of a stream (checked once per stream name)."""
        topic = self._topics.get(stream)
        if topic is None:
            topic = self._topics[stream] = resolve(self.tenant, stream)
        return topic

    def health(self) -> dict[str, Any]:
        age = time.monotonic() - self._last_progress
        return {"live": self._running and age < self.spec.tuning.liveness_stall_s, "stage": self.spec.name,
                "tenant": self.tenant, "last_progress_age_s": round(age, 3)}

    async def run(self, stop: asyncio.Event) -> None:
        assert self._consumer is not None, "start() first"
        t = self.spec.tuning
        watchdog = asyncio.create_task(self._deadlines.watch())
        try:
            while not stop.is_set():
                self._resume_due()
                batch = await self._consumer.getmany(timeout_ms=t.poll_timeout_ms, max_records=t.max_batch)
                work = self._process(batch) if batch else self._idle()
                if not await self._or_rewind(work, batch):
                    continue
                self._last_progress = time.monotonic()
                self._progress.set(time.time())
                self._update_gauges()
        finally:
            await self._drain()
            watchdog.cancel()

    async def _drain(self) -> None:
        """On the way out: the last batch's acks, ledger marks and commit (redelivered if that fails)."""
        try:
            await self._finish_tail(wait=True)
            await self._commits.due(force=True)
        except Exception as exc:
            log.warning("last_commit_failed", stage=self.spec.name, tenant=self.tenant,
                        error_code=classify(exc).code, error_class=type(exc).__name__)

    async def _or_rewind(self, work: Awaitable[None], batch: dict[TopicPartition, list]) -> bool:
        """Run a batch (or reap the previous batch's tail); when our own infrastructure fails
        (Redis restarting, PostgreSQL out of connections, the broker briefly away) nothing past the
        last commit counts, so rewind to the first uncommitted offsets and try again after a pause
        instead of letting the runner die. Handler errors never get here: they are retried, parked
        or dead-lettered per event."""
        try:
            await work
            return True
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            err = classify(exc)
            if not err.retryable:
                raise
            log.warning("batch_rewound", stage=self.spec.name, tenant=self.tenant, error_code=err.code,
                        error_class=type(exc).__name__)
            starts = {tp: msgs[0].offset for tp, msgs in batch.items() if msgs}
            tail, self._tail = self._tail, None
            if tail is not None:
                tail.task.cancel()
                await asyncio.gather(tail.task, return_exceptions=True)
                for tp, offset in tail.starts.items():
                    starts[tp] = min(offset, starts.get(tp, offset))
            assigned = self._consumer.assignment()
            for tp, offset in starts.items():
                if tp in assigned:
                    self._consumer.seek(tp, offset)
            await asyncio.sleep(self.spec.retry.quick_wait_max_s)
            return False

    # -- one batch ---------------------------------------------------------------------------
    async def _process(self, batch: dict[TopicPartition, list]) -> None:
        """Handle a batch and hand its records to the producer; its tail (acks, ledger, commit)
        starts once the previous batch's tail is through."""
        row, decoded, ids, keys, consumed = self._intake.row, {}, [], set(), 0
        for tp, msgs in batch.items():
            consumed += len(msgs)
            rows = decoded[tp] = [row(m) for m in msgs]
            for event, _error in rows:
                if event is not None:
                    ids.append(event.id)
                    keys.add(event.key)
        self._consumed.inc(consumed)
        done, blocked = await self._lookup(ids, list(keys))
        lanes = split_lanes(batch, decoded, self.input_topic, self.spec.tuning.key_lanes)
        state = BatchState([], [], {}, done, blocked)
        if len(lanes) == 1:
            await self._lane(state, lanes[0])
        else:
            await asyncio.gather(*(self._lane(state, parts) for parts in lanes))
        acks = await self._send(state.outbox)
        try:
            await self._finish_tail(wait=True)
        except BaseException:
            for ack in acks:  # the batch is rewound with the failed one; its acks are not awaited
                ack.add_done_callback(retrieve_exception)
            raise
        self._tail = Tail(asyncio.create_task(self._complete(acks, state.done_ids, state.commits, state.succeeded)),
                           {tp: msgs[0].offset for tp, msgs in batch.items() if msgs}, frozenset(state.done_ids))

    async def _lookup(self, event_ids: list[str], keys: list) -> tuple[set[str], dict[str, str]]:
        """The ledger's answer, with the events of the batch still in flight counted as done."""
        done, blocked = await self.ledger.lookup(event_ids, keys)
        if self._tail is not None:
            done.update(i for i in event_ids if i in self._tail.ids)
        return done, blocked

    async def _complete(self, acks: list, done_ids: list[str], commits: dict[TopicPartition, int],
                        succeeded: int) -> None:
        """A batch's tail: every produce acknowledged (acks=all), then the ledger marks and the commit,
        side by side. Either order is safe: an offset committed before its marks is not redelivered,
        and a mark without a commit only turns a redelivery into a skip. If either fails, the batch
        is rewound and handled again, which the ledger and deterministic output ids make harmless."""
        if acks:
            await asyncio.gather(*acks)
        if succeeded:
            self._succeeded.inc(succeeded)
        self._commits.add(commits)
        failures = [r for r in await asyncio.gather(self.ledger.mark_done(done_ids), self._commits.due(),
                                                    return_exceptions=True) if r is not None]
        if failures:
            raise failures[0]

    async def _idle(self) -> None:
        """An empty poll: reap the previous batch's tail; then commit what is due."""
        await self._finish_tail(wait=False)
        if self._tail is None:
            await self._commits.due()

    async def _finish_tail(self, *, wait: bool) -> None:
        """Reap the previous batch's tail (``wait``: until it is through); its error is raised here."""
        tail = self._tail
        if tail is None or not (wait or tail.task.done()):
            return
        await tail.task
        if self._tail is tail:
            self._tail = None

    async def _send(self, outbox: list[tuple]) -> list:
        """Hand every queued record to the producer, in order per partition; the acks' futures back."""
        records, outbox[:] = list(outbox), []  # taken at once: lanes may queue more meanwhile
        return await self.publisher.send_records(records) if records else []

    async def _flush(self, outbox: list[tuple]) -> None:
        """Hand every queued record to the producer and wait for all acks (acks=all)."""
        if outbox:
            await asyncio.gather(*await self._send(outbox))

    async def _lane(self, st: BatchState, parts: list[tuple[TopicPartition, list, list]]) -> None:
        handled, task = 0, asyncio.current_task()  # the lane's task: what a deadline cancels
        for tp, records, rows in parts:
            level = 0 if tp.topic == self.input_topic else int(tp.topic.rsplit(".", 1)[1])
            for m, row in zip(records, rows):
                event, error = row
                if row is PASSED_OVER:
                    pass
                elif level or event is None or event.id in st.done or (st.blocked and event.key in st.blocked):
                    if level and not self._due(tp, m):
                        break
                    await self._one(st, m, event, error, level, task)
                else:  # the common case, inline: a new input event of a key nothing waits for
                    ctx = Context(self, event, 1)
                    try:
                        await self._call(event, ctx, task)
                    except asyncio.CancelledError:
                        raise
                    except Exception as first:
                        await self._failed(st, m, event, None, ctx, first, None)
                    else:
                        st.succeeded += 1
                        self._queue_outputs(st.outbox, st.done_ids, event, ctx)
                if m.offset + 1 > st.commits.get(tp, 0):  # key lanes of one partition end in any order
                    st.commits[tp] = self._positions[tp] = m.offset + 1
                handled += 1
                if handled % YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # a handler that never waits would hold the loop all batch

    def _due(self, tp: TopicPartition, m) -> bool:
        due = due_ms(m.headers)
        if due <= time.time() * 1000:
            return True
        self._consumer.seek(tp, m.offset)
        self._consumer.pause(tp)
        self._paused[tp] = due / 1000
        return False

    def _resume_due(self) -> None:
        now = time.time()
        for tp, due in list(self._paused.items()):
            if due <= now:
                del self._paused[tp]
                if tp in self._consumer.assignment():
                    self._consumer.resume(tp)

    async def _one(self, st: BatchState, m, event: Event | None, error: BaseException | None,
                   level: int, task: asyncio.Task) -> None:
        if event is None:
            await self._dead_letter(st.outbox, m, None, Trail.from_record(m, level), error, attempts=0)
            return
        if event.id in st.done:
            metrics.DUPLICATES.labels(**self._labels).inc()
            if level and st.blocked.get(event.key) == event.id:
                await self._release(st, event.key)
            return
        blocker = st.blocked.get(event.key) if st.blocked else None
        # A key blocked by this very event is a crash between "block" and the retry record's ack:
        # the redelivered blocker runs (parking it behind itself would stall the patient forever).
        if level == 0 and blocker is not None and blocker != event.id:
            await self.ledger.park(event.key, m.partition, m.offset)
            metrics.PARKED.labels(**self._labels).inc()
            return
        trail = Trail.from_record(m, level) if level else None  # built for level 0 only on failure
        ctx = Context(self, event, (trail.attempts if trail else 0) + 1)
        try:  # one call, no retry machinery unless it fails
            await self._call(event, ctx, task)
        except asyncio.CancelledError:
            raise
        except Exception as first:
            await self._failed(st, m, event, trail, ctx, first, blocker)
            return
        st.succeeded += 1
        self._queue_outputs(st.outbox, st.done_ids, event, ctx)
        if blocker == event.id:
            await self._release(st, event.key)

    async def _failed(self, st: BatchState, m, event: Event, trail: Trail | None, ctx: Context,
                      first: Exception, blocker: str | None) -> None:
        """The handler's first call raised: quick retries, then outputs, a retry topic or the
        dead-letter topic; an input event that went to a retry topic blocks its key."""
        before = trail.attempts if trail else 0
        ctx, exc, attempts = await self._retry_quickly(event, before, ctx, first)
        if exc is None:
            st.succeeded += 1
        resolved = await self._settle(st.outbox, st.done_ids, m, event, trail, ctx, exc, attempts, count=False)
        if not resolved and trail is None:
            await self.ledger.block(event.key, event.id)
            st.blocked[event.key] = event.id
        elif resolved and blocker == event.id:
            await self._release(st, event.key)

    async def _settle(self, outbox, done_ids, m, event, trail: Trail | None, ctx: Context | None,
                      exc: BaseException | None, attempts: int, *, count: bool = True) -> bool:
        """Queue outputs / retry / dead letter; True when the event is finished (not waiting in retry).
        ``count``: add the success to the metric now (the batch path counts once per batch)."""
        if exc is None:
            self._queue_outputs(outbox, done_ids, event, ctx)
            if count:
                self._succeeded.inc()
            return True
        trail = trail or Trail.from_record(m, 0)
        err = classify(exc)
        if err.retryable and trail.level < self.spec.retry.levels:
            now_ms = int(time.time() * 1000)
            trail.failed(type(exc).__name__, err.code, fingerprint(exc), now_ms, attempts)
            delay = self.spec.retry.retry_backoff_s[trail.level]
            delay = max(delay, getattr(err, "retry_after", None) or 0.0)
            topic = self.retry_topics[trail.level]
            headers = retry_headers(m.headers, trail, now_ms + int(delay * 1000))
            outbox.append((topic, m.key, m.value, headers))
            metrics.RETRIED.labels(**self._labels).inc()
            log.info("event_retry", stage=self.spec.name, level=trail.level + 1, error_code=err.code,
                     **event.log_fields())
            return False
        await self._dead_letter(outbox, m, event, trail, exc, attempts=attempts)
        return True

    @staticmethod
    def _queue_outputs(outbox: list, done_ids: list, event: Event, ctx: Context) -> None:
        """A succeeded event: its outputs encoded into the outbox, its id among the batch's done."""
        for topic, out in ctx.outputs:
            outbox.append((topic, *encode_parts(out)))
        done_ids.append(event.id)

    async def _attempt(self, event: Event, before: int) -> tuple[Context, BaseException | None, int]:
        """Run the handler: (context of the last attempt, its error or None, attempts made). A
        retryable error is retried in process (tenacity) up to the policy's quick attempts."""
        ctx = Context(self, event, before + 1)
        try:  # fast path: one call, no retry machinery unless it fails
            await self._call(event, ctx)
            return ctx, None, 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return await self._retry_quickly(event, before, ctx, exc)

    async def _retry_quickly(self, event: Event, before: int, ctx: Context,
                             first: Exception) -> tuple[Context, BaseException | None, int]:
        """Quick retries after a failed first call (``quickretry``); a failure's context is unused."""
        async def attempt(n: int) -> Context:  # the n-th call of this delivery
            again = Context(self, event, before + n)
            await self._call(event, again)
            return again
        return await retry_quickly(self.spec.retry, first, ctx, attempt)

    async def _call(self, event: Event, ctx: Context, task: asyncio.Task | None = None) -> None:
        """The handler, under its deadline (``task``: the current task, when the caller has it)."""
        started = time.perf_counter()
        task = self._deadlines.enter(task)
        try:
            await self.spec.handler(event, ctx)
        except asyncio.CancelledError:
            if self._deadlines.leave(task):
                raise TimeoutError(f"handler exceeded {self._deadlines.timeout_s:g} s") from None
            raise
        finally:
            self._deadlines.leave(task)
            self._latency.observe(time.perf_counter() - started)

    async def _dead_letter(self, outbox, m, event: Event | None, trail: Trail, exc: BaseException,
                           attempts: int) -> None:
        err = classify(exc)
        now_ms = int(time.time() * 1000)
        fp = fingerprint(exc)
        trail.failed(type(exc).__name__, err.code, fp, now_ms, attempts)
        message = short_message(exc)
        headers = dlq_headers(m.headers, trail, self.spec.name, now_ms, type(exc).__name__, err.code, fp, message,
                              stack_text(exc))  # the dlq record is the whole dead letter (no table here)
        outbox.append((dlq_topic(self.tenant), m.key, m.value or b"", headers))
        metrics.DEAD_LETTERED.labels(**self._labels).inc()
        log.warning("event_dead_lettered", stage=self.spec.name, tenant=self.tenant, error_code=err.code,
                    error_class=type(exc).__name__, event_id=event.id if event else None,
                    trace_id=event.trace_id if event else None)

    # -- parking -----------------------------------------------------------------------------
    async def _release(self, st: BatchState, key: str | None) -> None:
        """The blocking event of ``key`` resolved: replay the key's parked events in order."""
        await self._flush(st.outbox)  # the blocking event's outputs go out before its successors'
        for partition, offset in await self.ledger.parked(key):
            m = await self._parked.read(TopicPartition(self.input_topic, partition), offset)
            event, error = self._intake.decode(m)
            trail = Trail.from_record(m, 0)
            outbox: list[tuple] = []
            done_ids: list[str] = []
            if event is None:
                await self._dead_letter(outbox, m, None, trail, error, attempts=0)
                resolved = True
            elif (await self._lookup([event.id], []))[0]:
                resolved = True
            else:
                resolved = await self._settle(outbox, done_ids, m, event, trail, *await self._attempt(event, 0))
            await self._flush(outbox)
            await self.ledger.mark_done(done_ids)
            if not resolved:
                await self.ledger.block(key, event.id)
                await self.ledger.unpark(key, partition, offset)
                st.blocked[key] = event.id
                return
            await self.ledger.unpark(key, partition, offset)
        await self.ledger.unblock(key)
        st.blocked.pop(key, None)

    # -- helpers -----------------------------------------------------------------------------
    def _update_gauges(self) -> None:
        """Consumer lag and partitions held, on the input topic."""
        lag, inputs = 0, 0
        for tp in self._consumer.assignment():
            if tp.topic != self.input_topic:
                continue
            inputs += 1
            high, position = self._consumer.highwater(tp), self._positions.get(tp)
            if high is not None and position is not None:
                lag += max(0, high - position)
        self._lag.set(lag)
        self._assigned.set(inputs)


async def run_stage(settings: Settings, tenant_id: str, spec: StageSpec, stop_event: asyncio.Event) -> None:
    """Run one stage for one tenant until ``stop_event`` is set; finishes the batch, commits, leaves."""
    runner = StageRunner(settings, tenant_id, spec)
    await runner.start()
    try:
        await runner.run(stop_event)
    finally:
        await runner.stop()
