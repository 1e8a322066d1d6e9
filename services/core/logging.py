"""Structured JSON logs (structlog) that carry tenant, event id and trace id and never PHI.

Fields whose names suggest clinical content are dropped by a processor, at the top level and
inside nested dicts and lists, so a careless ``log.info("...", text=note)`` or
``log.info("...", finding={"quote": q})`` cannot leak a note into the logs.
"""
from __future__ import annotations

import logging
import sys

import structlog

#: Field names that may hold PHI; their values never reach a log line.
PHI_FIELDS = frozenset({"text", "note", "note_text", "quote", "name", "patient_name", "body", "payload",
                        "message_text", "content", "birthdate", "address", "phone", "mrn"})


#: Third-party loggers that narrate routine work (group joins, connections) at INFO.
NOISY_LIBRARIES = ("aiokafka", "kafka", "faust", "mode", "httpx", "httpcore", "asyncio", "uvicorn.access")


#: How deep redaction looks into nested dicts and lists; deeper values are replaced whole.
REDACT_MAX_DEPTH = 6


def _redact(value, depth: int = 0):
    if isinstance(value, dict):
        if depth >= REDACT_MAX_DEPTH:
            return "[redacted: too deep]"
        return {k: "[redacted]" if str(k).lower() in PHI_FIELDS else _redact(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if depth >= REDACT_MAX_DEPTH:
            return "[redacted: too deep]"
        return [_redact(v, depth + 1) for v in value]
    return value


def _drop_phi(_logger, _method, event_dict: dict) -> dict:
    for key in list(event_dict):
        if key in PHI_FIELDS:
            event_dict[key] = "[redacted]"
        elif isinstance(event_dict[key], (dict, list, tuple)):
            event_dict[key] = _redact(event_dict[key], 1)
    return event_dict


def configure(level: str = "info", stream=None) -> None:
    logging.basicConfig(format="%(message)s", stream=stream or sys.stderr, level=level.upper())
    for noisy in NOISY_LIBRARIES:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level.upper())))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _drop_phi,
            structlog.processors.dict_tracebacks,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str):
    return structlog.get_logger(name)
