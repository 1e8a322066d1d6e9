"""What the stage runtime keeps for one batch: its state while the lanes run, and its tail."""
from __future__ import annotations

import asyncio
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
