"""Event payload schemas: one explicit table, CloudEvents ``type`` -> file in ``schemas/``.

    from services.core import schemas
    schemas.validate("vigil.ehr.resource-changed", data)   # raises ValidationError

Schemas are JSON Schema draft 2020-12, loaded and compiled once per process. The hot path
checks with a ``fastjsonschema``-compiled function (~10 us per event, the schemas use only
keywords it implements); only a payload it rejects goes through ``jsonschema``, the reference
validator, which produces the error. Error
messages name the event type, the JSON path and the failed keyword, never the offending
value (payloads may hold PHI). To add an event type: write ``schemas/<type>.json``, add
one line to ``SCHEMAS`` and a row to the event table in the docs.
"""
from __future__ import annotations

import json
import re
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import fastjsonschema
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


def _is_date_time(value: object) -> bool:
    try:
        return _date_time(value)
    except ValueError:
        return False


@lru_cache(maxsize=None)
def _fast(event_type: str):
    schema = dict(validator(event_type).schema)
    schema.pop("$schema", None)
    return fastjsonschema.compile(schema, formats={"date-time": _is_date_time})


def compile_all() -> None:
    """Compile every schema now (~40 ms each), e.g. when a stage starts, not on its first events."""
    for event_type in SCHEMAS:
        _fast(event_type)


def validate(event_type: str, data: object) -> None:
    """Raise ``ValidationError`` (code ``schema``) unless ``data`` matches the type's schema."""
    try:
        _fast(event_type)(data)
        return
    except fastjsonschema.JsonSchemaException:
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


def _keys_named(message: str) -> str:
    return ", ".join(re.findall(r"'([A-Za-z0-9_]{1,40})'", message))[:120]
