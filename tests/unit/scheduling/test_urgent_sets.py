"""The urgent-symptom detector on the labelled message sets (``urgent_sets``): every urgent message of
both sets is handed over, and few ordinary ones are."""
from __future__ import annotations

import json

import pytest

from services.scheduling import intents
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


# A third author's set, written blind to the detector (tests/data/conversations/third-author-notes.md).
URGENT3 = urgent_sets.DATA / "urgent3.jsonl"
#: its requests for a person: handed to staff whatever else the message says
PERSON_REQUESTS = ("w021", "w022", "w043", "w044", "w140", "w141")


def _rows(path):
    return {r["id"]: r for r in map(json.loads, path.read_text(encoding="utf-8").splitlines()) if r}


def test_the_third_authors_set_is_handed_over_at_the_level_reached():
    result = urgent_sets.score(URGENT3)
    print(result.render())
    assert (result.urgent, result.ordinary) == (100, 100)
    assert result.by_language == {"en": [60, 60], "es": [40, 40]}
    assert result.misses == [] and result.extra == []


@pytest.mark.parametrize("ident", PERSON_REQUESTS)
def test_every_request_for_a_person_of_the_third_set_goes_to_staff(ident):
    row = _rows(URGENT3)[ident]
    assert row["urgent"] is True
    assert intents.person_request(row["text"]) or intents.urgent(row["text"])


def test_every_lasting_concept_of_the_third_set_is_found_and_never_on_an_ordinary_message():
    """A lasting concept (chest pain, breathing, blood, fainting, seizure, one-sided weakness, suicidal
    thoughts, confusion) stays urgent even when the patient minimises it or says it passed."""
    lasting = {concept for lexicon in intents._LEXICONS for concept in lexicon.lasting}
    seen = 0
    for row in _rows(URGENT3).values():
        concepts = {f.concept for f in intents.urgent_findings(row["text"])}
        if concepts & lasting:
            seen += 1
            assert row["urgent"], row["id"]
    assert seen >= 40


@pytest.mark.parametrize("text", [
    "could the nurse give me a ring today", "quisiera hablar con alguien de la clínica",
    "me pueden devolver la llamada, por favor", "can I talk to someone about my results"])
def test_requests_for_a_person_are_recognised_beyond_the_set(text):
    assert intents.person_request(text)


@pytest.mark.parametrize("text", [
    "ive been having thoughts about ending my life", "is it normal that my chest feels tight at night",
    "lost the strength in my left arm suddenly", "de golpe perdí la fuerza del brazo izquierdo",
    "me dio un dolorcito de pecho", "se le fue el aire a mi mamá", "is it normal to have bloody stool",
    "¿es normal tener diarrea con sangre?", "fever? yes, 39", "i have a fever, a little worried"])
def test_urgent_messages_beyond_the_set(text):
    assert intents.urgent(text)


@pytest.mark.parametrize("text", [
    "chills? no. vomiting? nope.", "what are the most common side effects of chemo?",
    "¿qué hago si me cuesta respirar en casa?", "hace años tuve convulsiones", "rash, not too bad",
    "my shoulder has hurt for years, do you have parking?", "Please cancel my appointment, I'll call back later"])
def test_ordinary_messages_beyond_the_set(text):
    assert not (intents.urgent(text) or intents.person_request(text))
