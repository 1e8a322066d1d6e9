"""Retry, batching and consumer-group settings of a stage (frozen; defaults are production values),
and the garbage-collector setting of a stage process (``tune_gc``).

Backoff arithmetic (defaults):
  quick, in process (tenacity): QUICK_ATTEMPTS = 3 tries, waits 0.1 s then 0.2 s
      (exponential, base QUICK_WAIT_INITIAL_S, capped at QUICK_WAIT_MAX_S) -> at most ~0.3 s
      of waiting per delivery, so one flaky call never stalls a partition for long;
  retry topics: RETRY_BACKOFF_S = (5, 30, 300): retry.1 after 5 s, retry.2 after 30 s,
      retry.3 after 5 min; each delivery again gets the quick tries, so a poison event is
      tried 3 x (1 + 3) = 12 times over ~5 min 35 s before it goes to the dead-letter topic.
Tests shrink these with ``RetryPolicy(retry_backoff_s=(0.2, 0.4), quick_wait_initial_s=0.01)``.
A stage process takes its schedule from the environment (``RetryPolicy.with_env``; each stage is
its own process, so these are per stage): ``VIGIL_RETRY_BACKOFF_S`` ("5,30,300": one retry topic
per entry), ``VIGIL_RETRY_QUICK_ATTEMPTS``. A dead-letter drill runs with "1,2" and 1 quick try:
a poison event reaches the dead-letter topic in seconds instead of minutes.
``VIGIL_KAFKA_SESSION_TIMEOUT_MS`` sets a stage consumer's session timeout (``ConsumerTuning``):
the dev broker (Tansu) holds a group's JoinGroup for about half of it (whole seconds; Apache
Kafka waits ``group.initial.rebalance.delay.ms`` instead), so the test suite runs with 4000.
"""
from __future__ import annotations

import gc
import os
from dataclasses import dataclass, field, replace
from typing import Mapping

QUICK_ATTEMPTS = 3
QUICK_WAIT_INITIAL_S = 0.1
QUICK_WAIT_MAX_S = 1.0
RETRY_BACKOFF_S = (5.0, 30.0, 300.0)
#: Bounds of a configured schedule: at most 6 retry topics, none waiting more than a day.
MAX_LEVELS = 6
MAX_BACKOFF_S = 86_400.0

#: Processed-event ledger entries live 7 days (7 * 24 * 3600 s): longer than any replay window.
LEDGER_TTL_S = 7 * 24 * 3600

#: Records fetched per poll: bounds in-flight work (backpressure).
MAX_BATCH = 500
POLL_TIMEOUT_MS = 200
#: Tansu joins groups quickly only with short timeouts; heartbeat < session / 3.
SESSION_TIMEOUT_MS = 6_000
HEARTBEAT_INTERVAL_MS = 500
#: ``VIGIL_KAFKA_SESSION_TIMEOUT_MS`` may not go below three heartbeats, nor above Kafka's
#: default ``group.max.session.timeout.ms``.
SESSION_TIMEOUT_RANGE_MS = (3 * HEARTBEAT_INTERVAL_MS + 1, 1_800_000)
REBALANCE_TIMEOUT_MS = 6_000
MAX_POLL_INTERVAL_MS = 60_000
#: Offsets are committed at most this often (and when the stage stops): a batch's ledger marks
#: are written at once, so what a crash redelivers past the last commit is skipped, not redone.
#: At a few events per second each batch is one event, and a commit per batch was a Kafka
#: request per event.
COMMIT_INTERVAL_MS = 1_000
#: A fetch long-polls at most this long for partitions with nothing new. The client keeps one
#: fetch in flight per broker, so a long poll on a drained partition holds back the next fetch
#: of the busy ones: Kafka's 500 ms default stalls a stage whose partitions drain unevenly.
FETCH_MAX_WAIT_MS = 100
#: A handler may take this long before it counts as a (retryable) timeout.
HANDLER_TIMEOUT_S = 30.0
#: No completed poll loop for this long = not live (a stuck handler or a wedged consumer).
LIVENESS_STALL_S = 3 * HANDLER_TIMEOUT_S

#: CPython's collector thresholds for a stage process (CPython's default: 700, 10, 10). A batch
#: keeps a few objects per event alive until its handlers ran (~10 x MAX_BATCH), so with 700
#: the youngest generation is collected many times per batch, finds them alive, promotes them,
#: and the older generations are scanned over and over: about a tenth of a fast stage's CPU
#: (``make bench-runtime``). At 10 000 a batch's garbage mostly dies before a collection.
GC_THRESHOLDS = (10_000, 10, 10)


def tune_gc() -> None:
    """Apply ``GC_THRESHOLDS`` to this process (stage hosts call it at start)."""
    gc.set_threshold(*GC_THRESHOLDS)


@dataclass(frozen=True)
class RetryPolicy:
    quick_attempts: int = QUICK_ATTEMPTS
    quick_wait_initial_s: float = QUICK_WAIT_INITIAL_S
    quick_wait_max_s: float = QUICK_WAIT_MAX_S
    retry_backoff_s: tuple[float, ...] = RETRY_BACKOFF_S

    def __post_init__(self) -> None:
        if self.quick_attempts < 1:
            raise ValueError("quick_attempts must be >= 1")
        if any(b < 0 for b in self.retry_backoff_s):
            raise ValueError("retry backoffs must be >= 0")

    @property
    def levels(self) -> int:
        """Number of retry topics."""
        return len(self.retry_backoff_s)

    def with_env(self, env: Mapping[str, str]) -> "RetryPolicy":
        """This policy with ``VIGIL_RETRY_BACKOFF_S`` / ``VIGIL_RETRY_QUICK_ATTEMPTS`` applied where set."""
        from services.core.config import ConfigError

        policy = self
        raw = (env.get("VIGIL_RETRY_BACKOFF_S") or "").strip()
        if raw:
            try:
                backoff = tuple(float(part) for part in raw.split(","))
            except ValueError:
                backoff = ()
            if not backoff or any(not 0 <= b <= MAX_BACKOFF_S for b in backoff) or len(backoff) > MAX_LEVELS:
                raise ConfigError(f"VIGIL_RETRY_BACKOFF_S={raw!r}: expected 1-{MAX_LEVELS} comma-separated "
                                  f"seconds, each 0-{MAX_BACKOFF_S:.0f}")
            policy = replace(policy, retry_backoff_s=backoff)
        raw = (env.get("VIGIL_RETRY_QUICK_ATTEMPTS") or "").strip()
        if raw:
            if not raw.isdigit() or not 1 <= int(raw) <= 10:
                raise ConfigError(f"VIGIL_RETRY_QUICK_ATTEMPTS={raw!r}: expected a whole number 1-10")
            policy = replace(policy, quick_attempts=int(raw))
        return policy


def session_timeout_ms(env: Mapping[str, str]) -> int:
    """``VIGIL_KAFKA_SESSION_TIMEOUT_MS`` where set, else ``SESSION_TIMEOUT_MS``."""
    raw = (env.get("VIGIL_KAFKA_SESSION_TIMEOUT_MS") or "").strip()
    if not raw:
        return SESSION_TIMEOUT_MS
    low, high = SESSION_TIMEOUT_RANGE_MS
    if not raw.isdigit() or not low <= int(raw) <= high:
        from services.core.config import ConfigError

        raise ConfigError(f"VIGIL_KAFKA_SESSION_TIMEOUT_MS={raw!r}: expected whole milliseconds, {low}-{high} "
                          f"(more than three {HEARTBEAT_INTERVAL_MS} ms heartbeats)")
    return int(raw)


@dataclass(frozen=True)
class ConsumerTuning:
    max_batch: int = MAX_BATCH
    poll_timeout_ms: int = POLL_TIMEOUT_MS
    session_timeout_ms: int = field(default_factory=lambda: session_timeout_ms(os.environ))
    heartbeat_interval_ms: int = HEARTBEAT_INTERVAL_MS
    rebalance_timeout_ms: int = REBALANCE_TIMEOUT_MS
    max_poll_interval_ms: int = MAX_POLL_INTERVAL_MS
    fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS
    handler_timeout_s: float = HANDLER_TIMEOUT_S
    liveness_stall_s: float = LIVENESS_STALL_S
    ledger_ttl_s: int = LEDGER_TTL_S
    commit_interval_ms: int = COMMIT_INTERVAL_MS
    #: Lanes per input partition: a batch's records of one input partition are split by record key
    #: into this many lanes that run concurrently (each key's records in one lane, in offset order).
    #: 1 = one lane per partition. A partition with retry records in the batch is never split.
    key_lanes: int = 1
