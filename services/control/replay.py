"""Replay dead letters into their stage's input topic: dry run, rate limit, checkpoints, loop guard.

A job is created with the ids its filter matched at that moment (oldest failure first) and
walks them by index; ``checkpoint`` is the index of the next entry. For each entry:

1. skip if it is no longer waiting (purged, or already replayed by this job - a resumed job
   never sends an entry twice), or if the loop guard holds: the event was already replayed
   ``max_replays`` times into this stage (default 3) and ``force`` is off;
2. produce the ORIGINAL record (key, payload byte for byte, ``ce_*`` headers, so the event id is
   the original one) to ``original_topic`` with lineage headers ``vigil-replay-job``,
   ``vigil-replay-count``, ``vigil-replay-dlq-id`` and ``vigil-replay-original-{topic,partition,offset}``;
3. once the broker acknowledged it (acks=all), mark the entry replayed, count it for the loop
   guard and advance the checkpoint, in one transaction.

Steps 2-3 run shielded from cancellation, so an interrupted job (client gone, SIGTERM) stops
between entries, is marked ``interrupted`` and resumes from its checkpoint. Only a crash of the
process between the broker's ack and the commit can send an entry twice; the copy carries the
same event id and the stage's ledger drops it.

Why the original id is safe to re-deliver: the stage runtime marks an event done in its Redis
ledger only after the handler succeeded; a dead-lettered event never was, so the replay is
processed. Downstream effects stay exactly-once by their own idempotency (deterministic output
ids, writeback's conditional create on the decision identifier).

Rate: at most ``rate`` sends per second (default 50): send i is not before start + i / rate.
"""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

from services.control import metrics, store
from services.control.indexer import PURPOSE
from services.core.bus.publisher import Publisher
from services.core.crypto import Keyring
from services.core.errors import NotFoundError, ValidationError
from services.core.tenantdb import TenantPools

DEFAULT_RATE = 50.0
MAX_RATE = 1000.0
DEFAULT_MAX_REPLAYS = 3
DEFAULT_SAMPLE = 20
LINEAGE_PREFIX = "vigil-replay-"


@dataclass
class Progress:
    job_id: str = ""
    dry_run: bool = False
    total: int = 0
    to_send: int = 0
    sent: int = 0
    skipped_loop_guard: int = 0
    done: bool = False
    status: str = "running"
    targets: dict[str, int] = field(default_factory=dict)
    sample: list[dict] = field(default_factory=list)
    checkpoint: int = 0


def check_rate(rate: float) -> float:
    rate = rate or DEFAULT_RATE
    if not 0 < rate <= MAX_RATE:
        raise ValidationError(f"rate_per_second must be in (0, {MAX_RATE:g}]", code="bad_rate")
    return rate


def lineage(entry, job_id: str, count: int) -> list[tuple[str, bytes]]:
    values = {"job": job_id, "count": count, "dlq-id": entry["id"], "original-topic": entry["original_topic"],
              "original-partition": entry["original_partition"], "original-offset": entry["original_offset"]}
    return [(LINEAGE_PREFIX + k, str(v).encode()) for k, v in values.items()]


def _guarded(entry, counts: dict, max_replays: int, force: bool) -> tuple[bool, int]:
    count = counts.get((entry["stage"], entry["event_id"] or entry["id"]), 0)
    return (count >= max_replays and not force), count


class Replayer:
    def __init__(self, pools: TenantPools, keyring: Keyring, producer):
        self.pools, self.keyring, self.producer = pools, keyring, producer

    async def dry_run(self, flt: store.Filter, *, force: bool, max_replays: int, sample_size: int) -> Progress:
        async with self.pools.tx(flt.tenant, readonly=True) as conn:
            entries = await store.select_for_replay(conn, flt)
            counts = await store.replay_counts(conn, flt.tenant, [(e["stage"], e["event_id"] or e["id"])
                                                                   for e in entries])
        out = Progress(dry_run=True, total=len(entries), status="dry-run", done=True)
        targets: Counter = Counter()
        for e in entries:
            held, count = _guarded(e, counts, max_replays, force)
            if held:
                out.skipped_loop_guard += 1
            else:
                out.to_send += 1
                targets[e["original_topic"]] += 1
            if len(out.sample) < (sample_size or DEFAULT_SAMPLE):
                out.sample.append({"dlq_id": e["id"], "event_id": e["event_id"] or "", "event_type": e["event_type"]
                                   or "", "target_topic": e["original_topic"], "replay_count": count,
                                   "action": "skip-loop-guard" if held else "send",
                                   "headers": lineage(e, "<job>", count + 1)})
        out.targets = dict(targets)
        return out

    async def create(self, flt: store.Filter, *, force: bool, max_replays: int, rate: float, actor: str) -> str:
        job_id = "rj-" + uuid.uuid4().hex[:16]
        async with self.pools.tx(flt.tenant) as conn:
            entries = await store.select_for_replay(conn, flt)
            await store.create_job(conn, flt.tenant, job_id, flt, [e["id"] for e in entries], force, max_replays,
                                   rate, actor)
        return job_id

    async def run(self, tenant: str, job_id: str):
        """Yield ``Progress`` after each entry; the last one has ``done``. Resumes from the checkpoint."""
        async with self.pools.tx(tenant) as conn:
            job = await store.get_job(conn, tenant, job_id)
            if job is None:
                raise NotFoundError(f"replay job {job_id} not found", code="job_not_found")
            await store.set_job_status(conn, tenant, job_id, "running")
        ids = json.loads(job["entries"]) if isinstance(job["entries"], str) else list(job["entries"])
        progress = Progress(job_id=job_id, total=len(ids), checkpoint=job["checkpoint"], sent=job["sent"],
                            skipped_loop_guard=job["skipped"], to_send=len(ids) - job["skipped"])
        publisher = Publisher(self.pools.settings, tenant, producer=self.producer)
        started, sent_now = time.monotonic(), 0
        try:
            for index in range(job["checkpoint"], len(ids)):
                due = started + sent_now / job["rate"]
                if due > time.monotonic():
                    await asyncio.sleep(due - time.monotonic())
                sent = await asyncio.shield(self._one(publisher, tenant, job, ids[index], index + 1))
                progress.checkpoint = index + 1
                if sent:
                    sent_now += 1
                    progress.sent += 1
                else:
                    progress.skipped_loop_guard += 1
                    progress.to_send -= 1
                yield progress
        except (asyncio.CancelledError, GeneratorExit):
            async with self.pools.tx(tenant) as conn:
                await store.set_job_status(conn, tenant, job_id, "interrupted")
            raise
        async with self.pools.tx(tenant) as conn:
            await store.set_job_status(conn, tenant, job_id, "done")
        progress.done, progress.status = True, "done"
        yield progress

    async def _one(self, publisher: Publisher, tenant: str, job, dlq_id: str, checkpoint: int) -> bool:
        """Send one entry (True) or skip it (False); the checkpoint moves either way."""
        async with self.pools.tx(tenant, readonly=True) as conn:
            entry = await store.get_entry(conn, tenant, dlq_id)
            counts = await store.replay_counts(conn, tenant, [(entry["stage"], entry["event_id"] or entry["id"])]) \
                if entry else {}
        skip = (entry is None or entry["status"] == "purged" or entry["payload_enc"] is None
                or entry["last_replay_job"] == job["id"])
        held, count = _guarded(entry, counts, job["max_replays"], job["force"]) if entry else (True, 0)
        if skip or held:
            async with self.pools.tx(tenant) as conn:
                await store.skip_in_job(conn, tenant, job["id"], checkpoint)
            return False
        stored = json.loads(entry["headers"]) if isinstance(entry["headers"], str) else entry["headers"]
        headers = [(k, v.encode()) for k, v in stored if k.startswith("ce_") or k == "content-type"]
        headers += lineage(entry, job["id"], count + 1)
        key = await self.keyring.decrypt(tenant, entry["key_enc"], PURPOSE) if entry["key_enc"] is not None else None
        value = await self.keyring.decrypt(tenant, entry["payload_enc"], PURPOSE)
        await (await publisher.send_raw(entry["original_topic"], key, value, headers))
        async with self.pools.tx(tenant) as conn:
            await store.mark_replayed(conn, tenant, entry, job["id"], checkpoint)
        metrics.REPLAYED.labels(tenant=tenant, stage=entry["stage"]).inc()
        return True
