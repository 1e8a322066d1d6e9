"""The fast schema check against the reference validator: it may reject more (the reference
then decides) but must never accept a payload the reference rejects."""
from __future__ import annotations

import copy
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.core import schemas
from services.core.errors import ValidationError

CHANGED = {"resourceType": "DocumentReference", "id": "d1", "versionId": "2", "patient": "p1", "action": "update",
           "origin": "subscription", "lastUpdated": "2024-05-01T10:00:00+02:00"}
FINDINGS = {"document": {"id": "d1", "versionId": "2"}, "patient": "p1", "engine": "rules", "engineVersion": "1",
            "promptHash": None, "noteTime": "2024-05-01T10:00:00Z", "reviewRequired": False,
            "noteSha256": "a" * 64, "noteType": "progress-note",
            "findings": [{"category": "colitis", "grade": 2, "start": 0, "end": 7, "quote": "colitis",
                          "attribution": "immunotherapy", "confidence": 0.9}]}
EXAMPLES = {"vigil.ehr.resource-changed": CHANGED, "vigil.extraction.findings": FINDINGS}


def _reference_accepts(event_type: str, data: object) -> bool:
    return next(iter(schemas.validator(event_type).iter_errors(data)), None) is None


def _fast_accepts(event_type: str, data: object) -> bool:
    try:
        return schemas._fast(event_type)(data)
    except ValueError:
        return False


def test_examples_pass_both_checks():
    for event_type, data in EXAMPLES.items():
        assert _fast_accepts(event_type, data) and _reference_accepts(event_type, data)
        schemas.validate(event_type, data)


TIMES = ["".join(parts) for parts in itertools.product(
    ["2024-05-01", "2024-02-29", "2023-02-29", "2024-13-01", "2024-04-31", "2024-5-01"],
    ["T", "t", " ", ""],
    ["10:00:00", "23:59:60", "23:59:59", "24:00:00", "10:60:00", "10:00", "10:00:00.123456", "10:00:00.",
     "10:00:00.1234567"],
    ["Z", "z", "+00:00", "-23:59", "+24:00", "+0000", "", "+00:60"])]


@pytest.mark.parametrize("field,event_type,example", [("lastUpdated", "vigil.ehr.resource-changed", CHANGED),
                                                      ("noteTime", "vigil.extraction.findings", FINDINGS)])
def test_date_times_are_judged_as_the_reference_judges_them(field, event_type, example):
    """Leap seconds are RFC 3339 but not ours: the fast check must not let them through."""
    lenient, decided = [], 0
    for value in TIMES:
        data = dict(example, **{field: value})
        reference = _reference_accepts(event_type, data)
        if _fast_accepts(event_type, data) and not reference:
            lenient.append(value)
        try:
            schemas.validate(event_type, data)
            accepted = True
        except ValidationError:
            accepted = False
        assert accepted == reference, value
        decided += accepted
    assert lenient == []
    assert 0 < decided < len(TIMES)  # the grid holds both kinds
    with pytest.raises(ValidationError):
        schemas.validate(event_type, dict(example, **{field: "2024-05-01T23:59:60Z"}))


_VALUES = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                    st.floats(allow_nan=False), st.text(max_size=8), st.just(""), st.just([]), st.just({}),
                    st.just("2024-05-01T10:00:00Z"), st.just("a" * 64), st.sampled_from(["rules", "llm", "x"]))


def _mutate(data: dict, path: list, value: object, drop: bool) -> dict:
    out = copy.deepcopy(data)
    node = out
    for step in path[:-1]:
        node = node[step]
    if drop and isinstance(node, dict):
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value
    return out


def _paths(node, prefix=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield [*prefix, key]
            yield from _paths(value, (*prefix, key))
        yield [*prefix, "extra"]
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield [*prefix, i]
            yield from _paths(value, (*prefix, i))


@settings(max_examples=400, deadline=None)
@given(event_type=st.sampled_from(sorted(EXAMPLES)), pick=st.integers(min_value=0), value=_VALUES,
       drop=st.booleans())
def test_fast_check_never_accepts_what_the_reference_rejects(event_type, pick, value, drop):
    example = EXAMPLES[event_type]
    paths = list(_paths(example))
    data = _mutate(example, paths[pick % len(paths)], value, drop)
    if _fast_accepts(event_type, data):
        assert _reference_accepts(event_type, data)


def test_a_value_json_cannot_hold_is_a_validation_error():
    with pytest.raises(ValidationError) as caught:
        schemas.validate("vigil.ehr.resource-changed", dict(CHANGED, patient=object()))
    assert "patient" in str(caught.value) and "object at" not in str(caught.value)
