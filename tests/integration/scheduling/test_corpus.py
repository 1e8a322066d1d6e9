"""The conversation corpus (``tests/data/conversations``, written blind to the dialogue code) played
against both engines - the rules engine, and the LLM engine with a scripted model that tries to
claim bookings - with the EHR checked after every agent message (``corpus``).

`make test` plays a fixed subset; `make test-conversations` (VIGIL_CONVERSATIONS=all) plays every
conversation, prints the figures per engine and writes artifacts/conversations-<engine>.json;
VIGIL_CONVERSATIONS=c001,c017 plays those; VIGIL_CONVERSATIONS_TRANSCRIPT=1 prints every message;
VIGIL_CONVERSATIONS_CORPUS=tune2|holdout2 plays a second author's corpus instead of the first,
conversations3 a third author's, and
VIGIL_CONVERSATIONS_CORPUS=/path/to/file.jsonl any corpus file in the same format (all of it with
VIGIL_CONVERSATIONS=all; its figures go to artifacts/conversations-<file stem>-<engine>.json)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.integration.scheduling import corpus

pytest_plugins = ["tests.fixtures.fake_llm"]
#: "all": every conversation; "c001,c017": those; unset: the fixed subset.
CHOICE = os.environ.get("VIGIL_CONVERSATIONS", "")
FULL = CHOICE == "all"
IDS = None if FULL else tuple(CHOICE.split(",")) if CHOICE else corpus.SUBSET
NAME = os.environ.get("VIGIL_CONVERSATIONS_CORPUS", "conversations")
SIZES = {"conversations": 64, "tune2": 30, "holdout2": 30, "conversations3": 80}
#: Every patient message answered within this (p95, measured in the agent).
P95_LIMIT_S = 5.0


@pytest.mark.timeout(1800 if FULL else 300)            # a full corpus on a shared, loaded machine takes minutes
@pytest.mark.parametrize("engine", ["dialogue", "llm"])
async def test_conversation_corpus(sched, fake_llm, engine):
    conversations = corpus.load(IDS, NAME)
    assert len(conversations) == (SIZES.get(NAME) or len(corpus.load(None, NAME)) if FULL else len(IDS))
    assert conversations
    figures = await corpus.run(sched, engine, conversations, fake_llm)
    if os.environ.get("VIGIL_CONVERSATIONS_TRANSCRIPT"):
        print("\n" + "\n".join(figures.transcript))
    print("\n" + figures.render())
    if FULL:
        out = Path("artifacts") / (f"conversations-{engine}.json" if NAME == "conversations"
                                   else f"conversations-{corpus.corpus_path(NAME).stem}-{engine}.json")
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(figures.summary(), indent=2))
    assert figures.false_claims == 0
    assert figures.bookings_without_consent == 0
    assert all(figures.urgent_rate(language) == 1.0 for language in figures.urgent)
    assert figures.p95 < P95_LIMIT_S
    if NAME in ("conversations", "tune2", "holdout2") and (engine == "dialogue" or NAME == "conversations"):
        # the scripted model was written for the first corpus: on the others it understands less than
        # a real model would, so only the safety figures above hold it
        assert figures.failures == []


def test_claim_check_reads_the_ehr():
    """The checker itself: a stated time must be an Appointment of the patient with that status."""
    booked = [{"status": "booked", "start": "2030-03-05T15:00:00Z"},
              {"status": "cancelled", "start": "2030-03-04T10:00:00Z"}]
    assert corpus.check_claims("Your appointment is booked for Tuesday 5 March at 15:00.", booked).false == []
    assert corpus.check_claims("Your appointment on Monday 4 March at 10:00 is cancelled.", booked).false == []
    assert corpus.check_claims("Do you want me to cancel your appointment on Monday 4 March at 10:00?", booked).false
    assert corpus.check_claims("Su cita queda reservada para el lunes 4 de marzo a las 10:00.", booked).false
    assert corpus.check_claims("Great, you're all set and booked!", []).false
    assert corpus.check_claims("I could not find an upcoming appointment for you.", booked).false
    assert corpus.check_claims("1. Monday 4 March at 10:00\nShall I book Monday 4 March at 10:00?", []).false == []
