"""The dead-letter indexer: reads each tenant's ``vigil.<tenant>.dlq`` into ``vigil_dlq_entries``.

No consumer group: the indexer assigns the partitions of each tenant's dlq topic itself and
keeps its positions in ``vigil_dlq_index_offsets`` (platform table), advanced only after the
rows are committed, with the dlq id of the record before each position: a topic deleted and
created again (a tenant onboarded again under its id, a dev broker restarted) starts at offset
0, and a different record before the position (or none) makes the indexer read it from the
start. Rows are keyed by dlq id (``ON CONFLICT DO NOTHING``), so re-reading a record after a
crash changes nothing. The record is the whole dead letter: the stage runtime
writes no table, and puts the stack trace and the attempt history in the ``dlq-stack`` and
``dlq-history`` headers (``services.core.bus.failures``); the stack is stored encrypted, the
history in its own column, and neither among the headers kept in clear. This index is the one
dead-letter table, and the control service its one writer and reader.

``await indexer.sync()`` catches up once (every known tenant, or the given ones) and is what
the servicer calls before answering, so a listing is never behind the topic; ``run(stop)``
syncs every ``SYNC_INTERVAL_S`` and refreshes the DLQ gauges.
"""
from __future__ import annotations

import asyncio
import json
import time
from typing import Callable, Iterable

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.control import metrics, store
from services.core.bus.failures import DLQ_DETAIL_HEADERS
from services.core.bus.topics import dlq_topic, topic_partitions
from services.core.config import Settings
from services.core.crypto import Keyring
from services.core.events import header_value
from services.core.logging import get_logger
from services.core.tenantdb import TenantPools, TenantRoleMissing

log = get_logger("vigil.control.indexer")

SYNC_INTERVAL_S = 1.0
FETCH_TIMEOUT_MS = 200
MAX_RECORDS = 500
#: Fetches to wait for the record before a stored position (the check of a topic created again).
CHECK_FETCHES = 5
PURPOSE = "dlq"


def _text(headers, name: str) -> str:
    return header_value(headers, name) or ""


def _history(raw: str | None) -> str:
    """The attempt history header as a JSON array (``[]`` when absent or not a JSON array)."""
    try:
        value = json.loads(raw) if raw else []
    except ValueError:
        return "[]"
    return json.dumps(value if isinstance(value, list) else [])


def _int(headers, name: str) -> int:
    raw = header_value(headers, name)
    return int(raw) if raw and raw.lstrip("-").isdigit() else 0


class DlqIndexer:
    def __init__(self, settings: Settings, pools: TenantPools, admin: asyncpg.Pool, keyring: Keyring,
                 tenants: Callable[[], Iterable[str]]):
        self.settings, self.pools, self.admin, self.keyring, self.tenants = settings, pools, admin, keyring, tenants
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(enable_auto_commit=False, auto_offset_reset="earliest",
                                          **self.settings.kafka.client_kwargs())
        await self._consumer.start()

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.sync()
                metrics.publish_stats(await self._all_stats(), time.time())
            except Exception as exc:  # keep indexing other rounds; the error is reported, not hidden
                log.error("dlq_index.sync_failed", error_type=type(exc).__name__, error=str(exc)[:200])
            try:
                await asyncio.wait_for(stop.wait(), SYNC_INTERVAL_S)
            except asyncio.TimeoutError:
                pass

    async def _all_stats(self):
        async with self.admin.acquire() as conn:
            return await store.stats(conn, None, 86400)

    async def sync(self, tenants: Iterable[str] | None = None) -> int:
        """Index every record up to the current end of the tenants' dlq topics; returns rows added."""
        assert self._consumer is not None, "start() first"
        added = 0
        async with self._lock:
            for tenant in list(tenants if tenants is not None else self.tenants()):
                try:
                    added += await self._sync_tenant(tenant)
                except TenantRoleMissing:
                    log.warning("dlq_index.tenant_not_onboarded", tenant=tenant)
        return added

    async def _sync_tenant(self, tenant: str) -> int:
        topic = dlq_topic(tenant)
        partitions = await topic_partitions(self._consumer, topic)
        if not partitions:
            return 0
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        ends = await self._consumer.end_offsets(tps)
        async with self.admin.acquire() as conn:
            stored = {r["partition"]: (r["next_offset"], r["last_id"]) for r in await conn.fetch(
                "SELECT partition, next_offset, last_id FROM vigil_dlq_index_offsets WHERE topic = $1", topic)}
        starts = {}
        for tp in tps:
            start, last_id = stored.get(tp.partition, (0, None))
            if start and ends[tp] != start and not await self._same_topic(tp, start, last_id):
                log.warning("dlq_index.topic_created_again", topic=topic, partition=tp.partition, stored=start,
                            end=ends[tp])
                start = 0  # index it from its start: rows already there are kept (ON CONFLICT DO NOTHING)
                async with self.admin.acquire() as conn:
                    await conn.execute("UPDATE vigil_dlq_index_offsets SET next_offset = 0, last_id = NULL "
                                       "WHERE topic = $1 AND partition = $2", topic, tp.partition)
            if start < ends[tp]:
                starts[tp] = start
        if not starts:
            return 0
        self._consumer.assign(list(starts))
        for tp, start in starts.items():
            self._consumer.seek(tp, start)
        added = 0
        remaining = set(starts)
        while remaining:
            batch = await self._consumer.getmany(*remaining, timeout_ms=FETCH_TIMEOUT_MS, max_records=MAX_RECORDS)
            for tp, records in batch.items():
                if records:
                    added += await self._index(tenant, records)
                    async with self.admin.acquire() as conn:
                        await conn.execute(
                            "INSERT INTO vigil_dlq_index_offsets (topic, partition, next_offset, last_id) "
                            "VALUES ($1, $2, $3, $4) ON CONFLICT (topic, partition) DO UPDATE "
                            "SET next_offset = EXCLUDED.next_offset, last_id = EXCLUDED.last_id",
                            topic, tp.partition, records[-1].offset + 1, header_value(records[-1].headers, "dlq-id"))
            for tp in list(remaining):
                # done at the end offset listed at the start, or the fetch's high watermark if later
                # (the broker's listed end can trail what a fetch already returns)
                if await self._consumer.position(tp) >= max(ends[tp], self._consumer.highwater(tp) or 0):
                    remaining.discard(tp)
        return added

    async def _same_topic(self, tp: TopicPartition, start: int, last_id: str | None) -> bool:
        """Whether the partition is still the one indexed up to ``start``: the record before
        ``start`` is the one indexed last. A topic deleted and created again starts at offset 0,
        so the stored position alone would skip its first records. Asked whenever the partition's
        listed end is not ``start`` (on Apache Kafka: when there is something new to read). The dev
        broker (Tansu) lists as end the last batch's first offset + 1, below the real one, so there
        it is asked on every sync, and an end short of the position tells nothing on its own."""
        if not last_id:
            return True  # no id stored (positions from before ids were kept): nothing to tell by
        self._consumer.assign([tp])
        self._consumer.seek(tp, start - 1)
        for _ in range(CHECK_FETCHES):
            records = (await self._consumer.getmany(tp, timeout_ms=FETCH_TIMEOUT_MS, max_records=1)).get(tp)
            if records:
                first = records[0]
                # past start - 1: removed by retention; before it: the partition is shorter than the
                # position (the consumer was sent back to its beginning), a new topic
                same = (header_value(first.headers, "dlq-id") == last_id if first.offset == start - 1
                        else first.offset > start - 1)
                break
        else:
            same = False  # no record there: a new, shorter topic (reading it again costs time, skipping loses rows)
        return same

    async def _index(self, tenant: str, records) -> int:
        rows = []
        for record in records:
            dlq_id = _text(record.headers, "dlq-id")
            if not dlq_id:
                log.warning("dlq_index.record_without_id", tenant=tenant, partition=record.partition,
                            offset=record.offset)
                continue
            rows.append(await self._row(tenant, record, dlq_id))
        added = 0
        async with self.pools.tx(tenant) as conn:
            for row in rows:
                got = await conn.fetchval(
                    "INSERT INTO vigil_dlq_entries (tenant, id, stage, event_id, event_type, original_topic, "
                    "original_partition, original_offset, error_class, error_code, fingerprint, message, attempts, "
                    "first_failure, last_failure, key_hash, key_enc, payload_enc, stack_enc, history, headers, "
                    "dlq_partition, dlq_offset, replayed_from_job) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,"
                    "$13,$14,$15,$16,$17,$18,$19,$20::jsonb,$21::jsonb,$22,$23,$24) "
                    "ON CONFLICT (tenant, id) DO NOTHING RETURNING 1", *row)
                if got:
                    added += 1
                    metrics.INDEXED.labels(tenant=tenant, stage=row[2]).inc()
                    fresh = await conn.fetchval(
                        "INSERT INTO vigil_dlq_fingerprints (tenant, stage, fingerprint) VALUES ($1, $2, $3) "
                        "ON CONFLICT DO NOTHING RETURNING 1", tenant, row[2], row[10])
                    if fresh:
                        metrics.NEW_FINGERPRINTS.labels(tenant=tenant, stage=row[2]).inc()
        return added

    async def _row(self, tenant: str, record, dlq_id: str) -> tuple:
        h = record.headers or ()
        headers = [[k, v.decode("utf-8", "replace")] for k, v in h if k not in DLQ_DETAIL_HEADERS]
        stack = _text(h, "dlq-stack")
        history = _history(header_value(h, "dlq-history"))
        return (tenant, dlq_id, _text(h, "dlq-stage"), header_value(h, "ce_id"), header_value(h, "ce_type"),
                _text(h, "dlq-original-topic"), _int(h, "dlq-original-partition"), _int(h, "dlq-original-offset"),
                _text(h, "dlq-error-class"), _text(h, "dlq-error-code"), _text(h, "dlq-stack-fingerprint"),
                _text(h, "dlq-message"), _int(h, "dlq-attempts"), store.from_ms(_int(h, "dlq-first-failure")),
                store.from_ms(_int(h, "dlq-last-failure")), store.key_hash(tenant, record.key),
                await self.keyring.encrypt(tenant, record.key, PURPOSE) if record.key is not None else None,
                await self.keyring.encrypt(tenant, record.value or b"", PURPOSE),
                await self.keyring.encrypt(tenant, stack.encode(), PURPOSE),
                history, json.dumps(headers),
                record.partition, record.offset, header_value(h, "vigil-replay-job"))
