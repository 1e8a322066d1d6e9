"""The claim guard, message intents, and the system prompt's budget."""
from __future__ import annotations

import pytest

from services.scheduling import intents, prompt, render
from services.scheduling.guard import claims_action


@pytest.mark.parametrize("text", [
    "Your appointment is confirmed for Tuesday.", "You're booked!", "I've cancelled it for you.",
    "All set, see you on Monday", "Your visit has been rescheduled to Friday.", "I have scheduled you at 3 pm",
])
def test_claims_are_detected(text):
    assert claims_action(text)


@pytest.mark.parametrize("text", [
    render.NOT_UNDERSTOOD, render.REDIRECT, render.HANDOFF, render.SAFE_REPLY, render.NO_APPOINTMENT,
    "Shall I book Monday 4 March at 09:00 for you? Please reply yes or no.",
    "Do you want me to cancel your appointment on Monday? Please reply yes or no.",
    "Which day or time would suit you?", "Sorry, that time was just taken by someone else.",
])
def test_the_dialogue_texts_claim_nothing(text):
    assert not claims_action(text)


def test_safe_texts_never_claim():
    assert not claims_action(render.URGENT_REPLY) and not claims_action(render.booking_failed("not_read_back"))


@pytest.mark.parametrize("text", [
    "I have chest pain", "shortness of breath since yesterday", "severe diarrhea 8 times today",
    "there is blood in my stool", "I passed out this morning", "I noticed yellow eyes today", "I can't breathe",
])
def test_urgent_symptoms(text):
    assert intents.urgent(text)


@pytest.mark.parametrize("text", ["tomorrow at 3", "my diarrhea is better now", "cancel please", "yes"])
def test_not_urgent(text):
    assert not intents.urgent(text)


@pytest.mark.parametrize("text, index", [("2", 1), ("the first one", 0), ("option 3", 2), ("Third.", 2),
                                         ("last", -1), ("2 please", 1)])
def test_ordinals(text, index):
    assert intents.ordinal(text) == index


@pytest.mark.parametrize("text", ["2pm tomorrow", "the 2nd of April", "I have 2 questions"])
def test_not_ordinals(text):
    assert intents.ordinal(text) is None


def test_system_prompt_is_under_budget():
    text = prompt.system_prompt()
    assert 0 < len(text) <= prompt.PROMPT_BUDGET_CHARS
    # availability and clinic rules come from tools, not from the prompt
    assert not any(ch.isdigit() for ch in text.replace("0=Monday", ""))
    assert len(prompt.prompt_hash()) == 16


def test_prompt_over_budget_fails_loudly(tmp_path, monkeypatch):
    big = tmp_path / "system_prompt.md"
    big.write_text("x" * (prompt.PROMPT_BUDGET_CHARS + 1))
    monkeypatch.setattr(prompt, "PROMPT_FILE", big)
    prompt.system_prompt.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="budget"):
            prompt.system_prompt()
    finally:
        monkeypatch.undo()
        prompt.system_prompt.cache_clear()


def test_tool_definitions_are_strict_functions():
    names = [t["function"]["name"] for t in prompt.TOOLS]
    assert names == ["find_slots", "book_slot", "cancel_appointment", "list_appointments", "escalate_to_staff"]
    assert all(t["function"]["parameters"]["additionalProperties"] is False for t in prompt.TOOLS)
