"""The urgent-symptom detector on the labelled message sets (``urgent_sets``): every urgent message of
both sets is handed over, and few ordinary ones are."""
from __future__ import annotations

import json

import pytest

from tests.unit.scheduling import urgent_sets


@pytest.mark.parametrize("name", sorted(urgent_sets.SETS))
def test_every_urgent_message_of_the_labelled_sets_goes_to_staff(name):
    result = urgent_sets.score(urgent_sets.SETS[name])
    print(result.render())
    assert result.urgent >= 40 and result.ordinary >= 40
    assert result.misses == [] and result.recall == 1.0
    assert result.fpr <= 0.05, result.extra


def test_a_set_is_scored_by_path_and_a_bad_row_is_refused(tmp_path):
    good = tmp_path / "mine.jsonl"
    good.write_text("\n".join(json.dumps(r) for r in [
        {"id": "a", "language": "en", "urgent": True, "text": "I cant catch my breth"},
        {"id": "b", "language": "es", "urgent": True, "text": "mi mamá no está hablando con sentido"},
        {"id": "c", "language": "en", "urgent": False, "text": "can I move my appointment to Friday?"},
        {"id": "d", "language": "en", "urgent": False, "text": "I have no chest pain, just a question about parking"}]))
    result = urgent_sets.score(good)
    assert (result.found, result.urgent, result.false_positives, result.ordinary) == (2, 2, 0, 2)
    assert result.by_language == {"en": [1, 1], "es": [1, 1]}
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "x", "text": "hello"}))
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        urgent_sets.score(bad)
