"""JSON to and from bytes, fast: ``dumps(value) -> bytes``, ``loads(bytes) -> value``.

orjson does the work (about 10x faster to write, 5x to read, than the standard library); the
standard library takes what orjson refuses (integers beyond 64 bits). The bytes written are the
compact UTF-8 JSON ``json.dumps(separators=(",", ":"), ensure_ascii=False)`` writes, with one
difference: a float NaN or infinity becomes null here (the standard library writes non-JSON tokens).
"""
from __future__ import annotations

import json
from typing import Any

import orjson

_DUMPS = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:
        return _DUMPS(value).encode("utf-8")


def loads(value: bytes | str) -> Any:
    """Raises ``ValueError`` (``json.JSONDecodeError``) on what is not JSON."""
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return json.loads(value)


__all__ = ["dumps", "loads"]
