"""What a stage is (``StageSpec``) and what its handler gets with each event (``Context``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Awaitable, Callable

from services.core.bus import store
from services.core.bus.policy import ConsumerTuning, RetryPolicy
from services.core.events import Event
from services.core.logging import get_logger

if TYPE_CHECKING:
    from services.core.bus.runtime import StageRunner

log = get_logger("vigil.bus")
Handler = Callable[[Event, "Context"], Awaitable[None]]


@dataclass(frozen=True)
class StageSpec:
    name: str
    input_stream: str
    handler: Handler
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    tuning: ConsumerTuning = field(default_factory=ConsumerTuning)
    #: The event types the handler acts on (None: all). The runtime passes over the others by their
    #: ``ce_type`` header, before any decoding, ledger lookup or handler call; their offsets are
    #: committed with the batch. A record without that header is decoded (and dead-lettered) as before.
    types: frozenset[str] | None = None


class Context:
    """Passed to the handler: who we are, which attempt this is, and where outputs go."""

    __slots__ = ("event", "attempt", "outputs", "_runner", "_index")  # one per attempt of every event

    def __init__(self, runner: "StageRunner", event: Event, attempt: int):
        self.event, self.attempt, self._runner, self._index = event, attempt, runner, 0
        self.outputs: list[tuple[str, Event]] = []

    @property
    def tenant(self) -> str:
        return self._runner.tenant

    @property
    def stage(self) -> str:
        return self._runner.spec.name

    def emit(self, stream: str, event: Event) -> None:
        """Queue an output; it is produced (acks=all) before the input offset is committed.
        The payload is validated now: a bad output is a fatal error of this event."""
        topic = self._runner.resolve(stream)
        self._runner.publisher.check(event)
        self.outputs.append((topic, event))

    def child(self, type: str, data: dict, *, key: str | None = None) -> Event:
        """A derived event with a deterministic id (parent id, stage, type, running index)."""
        self._index += 1
        return self.event.child(type, data, stage=self.stage, index=self._index, key=key)

    async def claim(self, conn) -> bool:
        """Inside your PostgreSQL transaction: True only the first time this event's side effect runs."""
        return await store.claim(conn, self.tenant, self.stage, self.event.id)

    @property
    def log(self):
        return log.bind(stage=self.stage, attempt=self.attempt, **self.event.log_fields())
