"""A stage consumer's offset commits, on an interval: ``OffsetCommits``.

    commits = OffsetCommits(consumer, interval_ms, stage=..., tenant=...)
    commits.add({tp: next_offset})     # a finished batch (its produces acknowledged)
    await commits.due()                # commits if ``interval_ms`` has passed since the last one
    await commits.due(force=True)      # on stop

At a few events per second each batch is one event, and a commit per batch was a Kafka request
per event. A batch's ledger marks are written at once (``runtime``), so what a crash redelivers
past the last commit is skipped, not handled again. Offsets of partitions no longer assigned are
dropped (their new owner redelivers, the ledger skips); a commit refused because the partitions
moved is logged; after any other failure the offsets wait for the next commit and the error goes
to the caller (the batch is rewound).
"""
from __future__ import annotations

import time

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, RebalanceInProgressError

from services.core.logging import get_logger

log = get_logger("vigil.bus")


class OffsetCommits:
    def __init__(self, consumer: AIOKafkaConsumer, interval_ms: int, *, stage: str, tenant: str):
        self._consumer, self._interval_s = consumer, interval_ms / 1000
        self._log_fields = {"stage": stage, "tenant": tenant}
        self.pending: dict[TopicPartition, int] = {}  # finished batches' offsets, not committed yet
        self._committed_at = 0.0                      # time.monotonic() of the last commit

    def add(self, offsets: dict[TopicPartition, int]) -> None:
        self.pending.update(offsets)

    async def due(self, *, force: bool = False) -> None:
        if not self.pending:
            return
        now = time.monotonic()
        if not force and now - self._committed_at < self._interval_s:
            return
        assigned = self._consumer.assignment()
        offsets = {tp: offset for tp, offset in self.pending.items() if tp in assigned}
        self.pending, self._committed_at = {}, now
        try:
            await self._commit(offsets)
        except BaseException:
            for tp, offset in offsets.items():  # a newer offset queued meanwhile wins
                self.pending.setdefault(tp, offset)
            raise

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError, RebalanceInProgressError) as exc:
            # Partitions moved to another member mid-batch: it redelivers, the ledger dedupes.
            log.warning("commit_failed", error=type(exc).__name__, **self._log_fields)
