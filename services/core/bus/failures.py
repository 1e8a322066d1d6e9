"""What travels with a failing event: retry-topic headers, dead-letter headers, fingerprints.

Retry records keep the original ``ce_*`` headers and value and add ``vigil-*`` headers:
origin topic/partition/offset/timestamp, attempts so far, first failure time, due time and a
bounded attempt history. Dead-letter records keep the original value byte for byte, the
original ``ce_*`` headers (so the type is kept) and add the bounded ``dlq-*`` headers below,
including the stack trace (its last ``STACK_MAX`` characters) and the attempt history. The dlq
topic is the whole record of a dead letter: the runtime writes no table. The control service
indexes the topic into its ``vigil_dlq_entries`` (stack and payload encrypted there) and serves it
(`vigil dlq`, the console); nothing else reads dead letters.
"""
from __future__ import annotations

import hashlib
import json
import traceback
from dataclasses import dataclass, field

from services.core.events import deterministic_id, header_value

MESSAGE_MAX = 200
HISTORY_MAX = 16
#: Characters of the stack trace a dead letter carries (the end: the innermost frames and the error).
STACK_MAX = 16_384

DLQ_HEADERS = ("dlq-id", "dlq-original-topic", "dlq-original-partition", "dlq-original-offset",
               "dlq-original-timestamp", "dlq-stage", "dlq-attempts", "dlq-first-failure", "dlq-last-failure",
               "dlq-error-class", "dlq-error-code", "dlq-stack-fingerprint", "dlq-message")
#: The detail headers: the (bounded) stack trace and the attempt history as JSON. The control
#: service stores them encrypted / apart, never among the headers it keeps in clear.
DLQ_DETAIL_HEADERS = ("dlq-stack", "dlq-history")


def fingerprint(exc: BaseException) -> str:
    """Stable across runs for the same failure site: exception type + (file, function) of each frame."""
    frames = traceback.extract_tb(exc.__traceback__)
    site = "|".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.name}" for f in frames)
    return hashlib.sha256(f"{type(exc).__name__}|{site}".encode()).hexdigest()[:16]


def stack_text(exc: BaseException) -> str:
    """The stack trace, its last ``STACK_MAX`` characters (marked when cut)."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return text if len(text) <= STACK_MAX else "[...]" + text[-(STACK_MAX - 5):]


def short_message(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__).replace("\n", " ")[:MESSAGE_MAX]


@dataclass
class Trail:
    """Where an event came from and how it failed so far (carried in retry headers)."""

    origin_topic: str
    origin_partition: int
    origin_offset: int
    origin_timestamp: int
    attempts: int = 0
    first_failure_ms: int | None = None
    history: list[dict] = field(default_factory=list)
    level: int = 0

    @classmethod
    def from_record(cls, msg, level: int) -> "Trail":
        headers = msg.headers or ()
        if level == 0:
            return cls(msg.topic, msg.partition, msg.offset, msg.timestamp)
        history = json.loads(header_value(headers, "vigil-history") or "[]")
        first = header_value(headers, "vigil-first-failure")
        return cls(origin_topic=header_value(headers, "vigil-origin-topic") or msg.topic,
                   origin_partition=int(header_value(headers, "vigil-origin-partition") or msg.partition),
                   origin_offset=int(header_value(headers, "vigil-origin-offset") or msg.offset),
                   origin_timestamp=int(header_value(headers, "vigil-origin-timestamp") or msg.timestamp),
                   attempts=int(header_value(headers, "vigil-attempts") or 0),
                   first_failure_ms=int(first) if first else None, history=history, level=level)

    def failed(self, exc_class: str, code: str, fp: str, now_ms: int, attempts: int) -> None:
        self.attempts += attempts
        self.first_failure_ms = self.first_failure_ms or now_ms
        self.history = (self.history + [{"attempts": self.attempts, "at": now_ms, "class": exc_class,
                                         "code": code, "fingerprint": fp, "level": self.level}])[-HISTORY_MAX:]

    def dead_letter_id(self, stage: str) -> str:
        """The same for every redelivery of one record; the origin's timestamp tells it from a record
        at the same coordinates of a topic created again (a dev broker restarted, a tenant onboarded
        again under its id)."""
        return deterministic_id("dlq", stage, self.origin_topic, self.origin_partition, self.origin_offset,
                                self.origin_timestamp)


#: Headers a retry or dead-letter record keeps from its input: the envelope, and the replay
#: lineage added by the control service (so a replayed event that fails again stays traceable).
KEPT_HEADER_PREFIXES = ("ce_", "vigil-replay-")


def _ce_headers(headers) -> list[tuple[str, bytes]]:
    return [(k, v) for k, v in (headers or ()) if k.startswith(KEPT_HEADER_PREFIXES) or k == "content-type"]


def retry_headers(original, trail: Trail, due_ms: int) -> list[tuple[str, bytes]]:
    extra = {"vigil-origin-topic": trail.origin_topic, "vigil-origin-partition": trail.origin_partition,
             "vigil-origin-offset": trail.origin_offset, "vigil-origin-timestamp": trail.origin_timestamp,
             "vigil-attempts": trail.attempts, "vigil-first-failure": trail.first_failure_ms, "vigil-due": due_ms,
             "vigil-history": json.dumps(trail.history, separators=(",", ":"))}
    return _ce_headers(original) + [(k, str(v).encode()) for k, v in extra.items()]


def dlq_headers(original, trail: Trail, stage: str, last_ms: int, exc_class: str, code: str, fp: str,
                message: str, stack: str = "") -> list[tuple[str, bytes]]:
    values = (trail.dead_letter_id(stage), trail.origin_topic, trail.origin_partition, trail.origin_offset,
              trail.origin_timestamp, stage, trail.attempts, trail.first_failure_ms or last_ms, last_ms,
              exc_class, code, fp, message)
    detail = (stack[-STACK_MAX:], json.dumps(trail.history, separators=(",", ":")))
    return (_ce_headers(original) + [(k, str(v).encode()) for k, v in zip(DLQ_HEADERS, values)]
            + [(k, v.encode()) for k, v in zip(DLQ_DETAIL_HEADERS, detail)])
