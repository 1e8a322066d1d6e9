"""What the stage runtime keeps for one batch: its state while the lanes run, and its tail."""
from __future__ import annotations

import asyncio
import zlib
from collections import defaultdict
from dataclasses import dataclass


@dataclass
class BatchState:
    """Shared by a batch's lanes while they run."""

    outbox: list  # (topic, key, value, headers) records to produce before the commit
    done_ids: list  # events finished in this batch: marked in the ledger by the tail
    commits: dict  # TopicPartition -> the offset to commit
    done: set  # event ids the ledger (or the batch in flight) already finished: skipped
    blocked: dict  # patient key -> the event of that key waiting in a retry topic
    succeeded: int = 0


@dataclass
class Tail:
    """A batch after its records went to the producer: acks, ledger marks and commit still running."""

    task: asyncio.Task  # StageRunner._complete of the batch
    starts: dict  # TopicPartition -> the batch's first offset (where a rewind goes back to)
    ids: frozenset  # event ids the batch finished: done for the next batch's lookup


def retrieve_exception(future: asyncio.Future) -> None:
    """Done-callback for a future nobody awaits (a rewound batch's acks): reads its exception so
    asyncio does not report it as never retrieved."""
    if not future.cancelled():
        future.exception()


def split_lanes(batch: dict, decoded: dict, input_topic: str, key_lanes: int) -> list[list[tuple]]:
    """A batch's lanes, each a list of (partition, records, decoded rows) to run in order.

    Input partition p and retry-topic partition p hold the same patients: one lane, retries first.
    With ``key_lanes`` > 1, a partition with only input records in the batch is split by record
    key into at most that many lanes: a key's records stay in one lane, in offset order, so a
    patient's events keep their order (and a key blocked by a retry parks its later events in
    that lane as in an unsplit one). A partition with retry records is never split: a retry record
    not yet due stops its lane, and no other lane may run past it.
    """
    by_partition: dict[int, list] = defaultdict(list)
    for tp in sorted(batch, key=lambda tp: (tp.topic == input_topic, tp.topic)):  # retries first
        by_partition[tp.partition].append((tp, batch[tp], decoded[tp]))
    if key_lanes <= 1:
        return list(by_partition.values())
    lanes = []
    for parts in by_partition.values():
        if len(parts) > 1 or parts[0][0].topic != input_topic or len(parts[0][1]) < 2:
            lanes.append(parts)
            continue
        tp, records, rows = parts[0]
        subs: dict[int, tuple[list, list]] = {}
        for m, row in zip(records, rows):
            sub = subs.setdefault(zlib.crc32(m.key or b"") % key_lanes, ([], []))
            sub[0].append(m)
            sub[1].append(row)
        lanes.extend([(tp, ms, rs)] for ms, rs in subs.values())
    return lanes
