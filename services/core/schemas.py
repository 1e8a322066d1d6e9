"""Event payload schemas: one explicit table, CloudEvents ``type`` -> file in ``schemas/``.

    from services.core import schemas
    schemas.validate("vigil.ehr.resource-changed", data)   # raises ValidationError

Schemas are JSON Schema draft 2020-12, loaded and compiled once per process. The hot path
checks with ``jsonschema_rs`` (compiled, under a microsecond for an event payload); only a
payload it rejects goes through ``jsonschema``, the reference validator, which decides and
produces the error. The fast check must never accept what the reference rejects: where its
built-in ``date-time`` is more lenient than ours (RFC 3339 leap seconds, which
``datetime.fromisoformat`` - and so every consumer - refuses), its copy of the schema says so
(``_fast_schema``); the unit tests compare both validators on a grid of times. Error
messages name the event type, the JSON path and the failed keyword, never the offending
value (payloads may hold PHI). ``check_outgoing`` is what a producer adds: a property the
schema marks ``"deprecated": true`` (the version-1 plain evidence ``quote``) is still accepted
from old events but never produced (``ValidationError`` code ``deprecated``). To add an event type: write ``schemas/<type>.json``, add
one line to ``SCHEMAS`` and a row to the event table in the docs.
"""
from __future__ import annotations

import json
import re
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import jsonschema_rs
from jsonschema import Draft202012Validator, FormatChecker

from services.core.errors import ValidationError

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"

#: CloudEvents type -> schema file (relative to SCHEMA_DIR).
SCHEMAS: dict[str, str] = {
    "vigil.ehr.resource-changed": "vigil.ehr.resource-changed.json",
    "vigil.ehr.task-updated": "vigil.ehr.task-updated.json",
    "vigil.extraction.findings": "vigil.extraction.findings.json",
    "vigil.triage.decision": "vigil.triage.decision.json",
    "vigil.scheduling.message": "vigil.scheduling.message.json",
    "vigil.triage.followup-request": "vigil.triage.followup-request.json",
    "vigil.writeback.task-written": "vigil.writeback.task-written.json",
    "vigil.ingest.hl7-received": "vigil.ingest.hl7-received.json",
    "vigil.ingest.lab-result": "vigil.ingest.lab-result.json",
    "vigil.cdshooks.feedback": "vigil.cdshooks.feedback.json",
}

_FORMATS = FormatChecker(formats=())
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


@_FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _RFC3339.match(value):
        return False
    datetime.fromisoformat(value.replace("z", "+00:00").replace("Z", "+00:00"))
    return True


@lru_cache(maxsize=None)
def validator(event_type: str) -> Draft202012Validator:
    """The compiled validator of an event type; ``ValidationError`` if the type is unknown."""
    try:
        filename = SCHEMAS[event_type]
    except KeyError:
        raise ValidationError(f"unknown event type {event_type!r} (no entry in SCHEMAS)", code="unknown_type") from None
    schema = json.loads((SCHEMA_DIR / filename).read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=_FORMATS)


#: Seconds field 60 (a leap second): valid RFC 3339, which ``jsonschema_rs`` accepts, but
#: ``datetime.fromisoformat`` refuses it, so our ``date-time`` does too.
_LEAP_SECOND = {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:60"}


def _fast_schema(node: object) -> object:
    """The schema for the fast check: a copy where every ``format: date-time`` also excludes
    leap seconds (``not`` of a string pattern: non-strings such as a null stay valid)."""
    if isinstance(node, list):
        return [_fast_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    copy = {key: _fast_schema(value) for key, value in node.items()}
    if copy.get("format") == "date-time":
        if "not" in copy:
            copy["allOf"] = [*copy.get("allOf", []), {"not": _LEAP_SECOND}]
        else:
            copy["not"] = _LEAP_SECOND
    return copy


@lru_cache(maxsize=None)
def _fast(event_type: str):
    """The compiled fast check of an event type: data -> bool."""
    schema = _fast_schema(validator(event_type).schema)
    return jsonschema_rs.Draft202012Validator(schema, validate_formats=True, offline=True).is_valid


def compile_all() -> None:
    """Compile every schema now, e.g. when a stage starts, not on its first events."""
    for event_type in SCHEMAS:
        _fast(event_type)


def validate(event_type: str, data: object) -> None:
    """Raise ``ValidationError`` (code ``schema``) unless ``data`` matches the type's schema."""
    try:
        if _fast(event_type)(data):
            return
    except ValueError:  # a value JSON has no type for (the reference validator names it)
        pass
    error = next(iter(validator(event_type).iter_errors(data)), None)
    if error is None:  # the fast check is stricter somewhere: the reference validator decides
        return
    path = "/".join(str(p) for p in error.absolute_path) or "(root)"
    detail = error.validator
    if error.validator == "required" or error.validator == "additionalProperties":
        # These messages name keys, not values: keys are schema vocabulary, safe to show.
        detail = f"{error.validator}: {_keys_named(error.message)}"
    raise ValidationError(f"{event_type}: {path}: {detail} failed", code="schema")


@lru_cache(maxsize=None)
def deprecated_paths(event_type: str) -> tuple[tuple[str, ...], ...]:
    """The paths of the properties the type's schema marks deprecated ("*" = every array item)."""
    found: list[tuple[str, ...]] = []

    def walk(node: object, path: tuple[str, ...]) -> None:
        if not isinstance(node, dict):
            return
        for name, sub in (node.get("properties") or {}).items():
            if isinstance(sub, dict) and sub.get("deprecated") is True:
                found.append(path + (name,))
            walk(sub, path + (name,))
        if isinstance(node.get("items"), dict):
            walk(node["items"], path + ("*",))

    walk(validator(event_type).schema, ())
    return tuple(found)


def _present(data: object, path: tuple[str, ...]) -> bool:
    if not path:
        return True
    head, rest = path[0], path[1:]
    if head == "*":
        return isinstance(data, list) and any(_present(item, rest) for item in data)
    return isinstance(data, dict) and head in data and _present(data[head], rest)


def check_outgoing(event_type: str, data: object) -> None:
    """``validate``, and refuse a payload that uses a deprecated property (consumers still accept
    it from old events; producers must not write it)."""
    validate(event_type, data)
    for path in deprecated_paths(event_type):
        if _present(data, path):
            raise ValidationError(f"{event_type}: {'/'.join(path)}: deprecated (produce the current version)",
                                  code="deprecated")


def _keys_named(message: str) -> str:
    return ", ".join(re.findall(r"'([A-Za-z0-9_]{1,40})'", message))[:120]
