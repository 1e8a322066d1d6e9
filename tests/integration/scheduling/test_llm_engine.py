"""The LLM tool-calling engine against a scripted OpenAI-compatible server (``fake_llm``), the
real tools service, EHR sandbox, Redis and PostgreSQL. Whatever the model says, the patient is
told of a booking only when the ledger and the EHR read-back show it."""
from __future__ import annotations

import json
import re

import pytest

from services.inference.llm.ledger import Ledger
from services.scheduling import prompt, render
from tests.fixtures.fake_llm import reply, tool_calls_reply
from tests.integration.scheduling.conftest import slot_time

pytest_plugins = ["tests.fixtures.fake_llm"]
CLAIM = re.compile(r"\b(booked|confirmed|cancelled|rescheduled)\b", re.IGNORECASE)


def text(result) -> str:
    return "\n".join(result.texts)


@pytest.fixture
async def llm_sched(sched, fake_llm):
    await sched.start_inference()
    sched.registry(scheduling_engine="llm", scheduling_llm_base_url=fake_llm.base_url,
                   scheduling_llm_model="fake-model")
    sched.new_agent()
    return sched


def last_tool_result(body: dict) -> dict:
    return json.loads([m for m in body["messages"] if m["role"] == "tool"][-1]["content"])


async def test_model_calls_tools_correctly(llm_sched, fake_llm):
    sched = llm_sched
    patient = await sched.patient()
    opened = await sched.open(patient)
    assert "1. Monday 4 March at 09:00" in text(opened)
    fake_llm.script(
        tool_calls_reply(("find_slots", {"date_from": "2030-03-05", "date_to": "2030-03-05",
                                         "part_of_day": "afternoon"})),
        lambda body: reply("I have Tuesday 5 March at 14:00 or 15:00. Which one suits you?"))
    offered = await sched.say(patient, "Do you have anything Tuesday afternoon?")
    assert text(offered) == "I have Tuesday 5 March at 14:00 or 15:00. Which one suits you?"
    found = last_tool_result(fake_llm.requests[-1].body)["slots"]
    assert [s["time"] for s in found] == ["Tuesday 5 March at 14:00", "Tuesday 5 March at 15:00"]
    fake_llm.script(
        lambda body: tool_calls_reply(("book_slot", {"slot_id": found[1]["slot_id"]})),
        lambda body: reply("Done, you're booked!"))                 # a claim: never sent
    asked = await sched.say(patient, "15:00 please")
    # book_slot only proposes: the agent asks its own question, the model's words are dropped
    assert text(asked) == "Shall I book Tuesday 5 March at 15:00 for you? Please reply yes or no."
    assert await sched.booked(patient) == []
    calls = len(fake_llm.requests)
    done = await sched.say(patient, "yes")                          # the yes is the agent's, not the model's
    assert text(done) == "Your appointment is booked for Tuesday 5 March at 15:00."
    assert len(fake_llm.requests) == calls
    booked = await sched.booked(patient)
    assert [a["slot"] for a in booked] == [[{"reference": f"Slot/{sched.grid[slot_time(5, 15)]}"}]]
    first = fake_llm.requests[-4].body
    assert first["messages"][0] == {"role": "system", "content": prompt.system_prompt()}
    assert "Times offered so far: slot_id=" in first["messages"][1]["content"]
    assert {t["function"]["name"] for t in first["tools"]} >= {"find_slots", "book_slot", "cancel_appointment"}
    assert await sched.tasks(patient) == []


async def test_claim_without_booking_is_blocked_and_escalated(llm_sched, fake_llm):
    sched = llm_sched
    patient = await sched.patient()
    await sched.open(patient)
    fake_llm.script(reply("Great news: your appointment is confirmed for Monday 4 March at 09:00!"))
    result = await sched.say(patient, "The first one works")
    assert text(result) == render.SAFE_REPLY
    assert result.blocked == 0 and len(result.tasks) == 1
    assert not CLAIM.search(text(result))
    (task,) = await sched.tasks(patient)
    assert task["businessStatus"]["text"] == "blocked-claim"
    assert await sched.appointments(patient) == []
    assert await sched.slot_status(sched.grid[slot_time(4, 9)]) == "free"
    sent = [c["payload"][0]["contentString"] for c in await sched.messages_to(patient)]
    assert not any("confirmed" in s for s in sent)


async def test_booking_a_taken_slot_is_never_reported_booked(llm_sched, fake_llm):
    """The slot was offered, then someone else took it in the EHR: the proposal re-validates it."""
    sched = llm_sched
    patient, other = await sched.patient(), await sched.patient("Other")
    taken = sched.grid[slot_time(4, 9)]
    await sched.open(patient)
    await sched.ehr.client.book({"resourceType": "Appointment", "status": "booked",
                                 "slot": [{"reference": f"Slot/{taken}"}],
                                 "participant": [{"actor": {"reference": f"Patient/{other}"}, "status": "accepted"}]})
    fake_llm.script(tool_calls_reply(("book_slot", {"slot_id": taken})),
                    reply("Your appointment is booked for Monday 4 March at 09:00."))
    result = await sched.say(patient, "Monday at 9 please")
    assert text(result) == render.SAFE_REPLY and not CLAIM.search(text(result))
    assert json.loads(fake_llm.requests[-1].body["messages"][-1]["content"]) == {"status": "conflict",
                                                                                 "reason": "slot_taken"}
    assert await sched.appointments(patient) == []
    on_slot = await sched.ehr.client.search("Appointment", {"slot": f"Slot/{taken}"})
    assert [a["participant"][0]["actor"]["reference"] for a in on_slot] == [f"Patient/{other}"]
    assert [t["businessStatus"]["text"] for t in await sched.tasks(patient)] == ["blocked-claim"]


async def test_model_asking_to_escalate_urgent_symptoms(llm_sched, fake_llm):
    sched = llm_sched
    patient = await sched.patient()
    await sched.open(patient)
    # urgent wording the rules catch never reaches the model
    result = await sched.say(patient, "I've got shortness of breath since this morning")
    assert text(result) == render.URGENT_REPLY and fake_llm.requests == []
    (task,) = await sched.tasks(patient)
    assert task["priority"] == "urgent"


async def test_llm_endpoint_failure_goes_to_staff(llm_sched, fake_llm):
    from tests.fixtures.fake_llm import error

    sched = llm_sched
    patient = await sched.patient()
    await sched.open(patient)
    fake_llm.script(error(400, message="bad request"))
    result = await sched.say(patient, "any time on Friday")
    assert text(result) == render.SAFE_REPLY
    assert [t["businessStatus"]["text"] for t in await sched.tasks(patient)] == ["engine-error"]
    assert await sched.appointments(patient) == []


async def test_scheduling_model_calls_are_counted_in_the_inference_cost_ledger(sched, fake_llm):
    """The scheduling agent never calls the model itself: inference's Chat does, within the tenant's
    budget, and records each call in its own ledger (purpose ``scheduling``, the conversation id as
    the document, the tenant's scheduling prices)."""
    await sched.start_inference()
    sched.registry(scheduling_engine="llm", scheduling_llm_base_url=fake_llm.base_url,
                   scheduling_llm_model="fake-model", scheduling_llm_price_input_per_mtok=1.0,
                   scheduling_llm_price_output_per_mtok=2.0)
    sched.new_agent()
    patient = await sched.patient()
    opened = await sched.open(patient)
    fake_llm.script(
        tool_calls_reply(("find_slots", {"date_from": "2030-03-05", "date_to": "2030-03-05"}),
                         prompt_tokens=300, completion_tokens=40),
        reply("I have Tuesday 5 March at 09:00. Would that suit you?", prompt_tokens=500, completion_tokens=30))
    await sched.say(patient, "Anything on Tuesday?")
    rows = await Ledger(None, sched.pools).rows(sched.tenant)
    assert [(r["purpose"], r["document_id"], r["model"], r["prompt_tokens"], r["completion_tokens"], r["outcome"])
            for r in rows] == [("scheduling", opened.conversation_id, "fake-model", 300, 40, "ok"),
                               ("scheduling", opened.conversation_id, "fake-model", 500, 30, "ok")]
    assert [float(r["cost_usd"]) for r in rows] == pytest.approx([380e-6, 560e-6])
    assert await Ledger(None, sched.pools).spent_today(sched.tenant) == pytest.approx(940e-6)


async def test_a_spent_budget_hands_the_conversation_to_staff(sched, fake_llm):
    """The tenant's daily budget covers every purpose: once extraction and scheduling spent it, the
    scheduling agent's next model call is refused by inference and the patient goes to staff."""
    await sched.start_inference()
    sched.registry(scheduling_engine="llm", scheduling_llm_base_url=fake_llm.base_url,
                   scheduling_llm_model="fake-model", scheduling_llm_price_input_per_mtok=1.0,
                   llm_daily_budget_usd=0.0001)
    sched.new_agent()
    patient = await sched.patient()
    await sched.open(patient)
    fake_llm.script(reply("Which day suits you?", prompt_tokens=200, completion_tokens=10))
    await sched.say(patient, "Anything on Tuesday?")               # 0.0002 USD: the budget is spent
    calls = len(fake_llm.requests)
    result = await sched.say(patient, "Or Wednesday?")
    assert len(fake_llm.requests) == calls                         # refused before the endpoint
    assert text(result) == render.SAFE_REPLY
    assert [t["businessStatus"]["text"] for t in await sched.tasks(patient)] == ["engine-error"]
