"""Extension points around every write, so features such as subscriptions can be added
without touching storage code.

- ``IN_TRANSACTION`` callbacks run inside the database transaction that made the change,
  with the connection (``await fn(conn, change)``): queue an event atomically with the write.
  An exception there rolls the write back.
- ``POST_COMMIT`` callbacks run after the transaction committed (``await fn(change)``), once
  per change, in order. Their exceptions are logged and do not undo the committed write.
Writes lost on purpose by the dropped-write fault call neither.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Awaitable, Callable

ACTIONS = ("create", "update", "delete")


@dataclass(frozen=True)
class Change:
    tenant: str
    resource_type: str
    id: str
    version: int
    action: str  # create | update | delete
    resource: dict | None  # None for delete


InTransactionHook = Callable[[object, Change], Awaitable[None]]
PostCommitHook = Callable[[Change], Awaitable[None]]

IN_TRANSACTION: list[InTransactionHook] = []
POST_COMMIT: list[PostCommitHook] = []


def register_in_transaction(fn: InTransactionHook) -> None:
    if fn not in IN_TRANSACTION:
        IN_TRANSACTION.append(fn)


def register_post_commit(fn: PostCommitHook) -> None:
    if fn not in POST_COMMIT:
        POST_COMMIT.append(fn)


def unregister(fn) -> None:
    for table in (IN_TRANSACTION, POST_COMMIT):
        if fn in table:
            table.remove(fn)
