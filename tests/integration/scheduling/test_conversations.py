"""Scripted multi-turn conversations with the deterministic engine, against the real EHR sandbox,
tools over gRPC, Redis and PostgreSQL: every test asserts the replies and the final EHR state.
The agent's clock is Monday 4 March 2030 08:00 UTC; the grid has weekday slots at 09, 10, 14, 15."""
from __future__ import annotations

import asyncio
import re

import pytest

from services.scheduling import render
from tests.integration.scheduling.conftest import slot_time

CLAIM = re.compile(r"\b(booked|confirmed|cancelled|rescheduled)\b", re.IGNORECASE)


def text(result) -> str:
    return "\n".join(result.texts)


def slot_ref(sched, day: int, hour: int) -> list[dict]:
    return [{"reference": f"Slot/{sched.grid[slot_time(day, hour)]}"}]


async def book(sched, patient, choice: str = "2", expect: str = "Monday 4 March at 10:00"):
    await sched.open(patient)
    asked = await sched.say(patient, choice)
    assert f"Shall I book {expect}" in text(asked)
    done = await sched.say(patient, "yes")
    assert text(done) == f"Your appointment is booked for {expect}."
    return done


async def test_simple_booking(sched):
    patient = await sched.patient()
    opened = await sched.open(patient)
    assert "follow-up visit" in text(opened)
    assert "1. Monday 4 March at 09:00\n2. Monday 4 March at 10:00\n3. Monday 4 March at 14:00" in text(opened)
    asked = await sched.say(patient, "2")
    assert "Shall I book Monday 4 March at 10:00" in text(asked)
    assert not CLAIM.search(text(asked))
    done = await sched.say(patient, "yes please")
    assert text(done) == "Your appointment is booked for Monday 4 March at 10:00."
    booked = await sched.booked(patient)
    assert len(booked) == 1 and booked[0]["start"] == "2030-03-04T10:00:00Z"
    assert booked[0]["slot"] == slot_ref(sched, 4, 10)
    assert await sched.slot_status(sched.grid[slot_time(4, 10)]) == "busy"
    assert len(await sched.messages_to(patient)) == len(opened.sent) + len(asked.sent) + len(done.sent) == 3


async def test_next_tuesday_afternoon(sched):
    patient = await sched.patient()
    await sched.open(patient)
    offered = await sched.say(patient, "Could I come next Tuesday afternoon?")
    assert "1. Tuesday 5 March at 14:00\n2. Tuesday 5 March at 15:00" in text(offered)
    assert "3." not in text(offered)
    asked = await sched.say(patient, "the second one")
    assert "Shall I book Tuesday 5 March at 15:00" in text(asked)
    done = await sched.say(patient, "yes")
    assert text(done) == "Your appointment is booked for Tuesday 5 March at 15:00."
    assert [a["slot"] for a in await sched.booked(patient)] == [slot_ref(sched, 5, 15)]


async def test_tomorrow_at_three_goes_straight_to_confirmation(sched):
    patient = await sched.patient()
    await sched.open(patient)
    asked = await sched.say(patient, "tomorrow at 3")
    assert text(asked) == "Shall I book Tuesday 5 March at 15:00 for you? Please reply yes or no."
    read = await sched.say(patient, "ok")                 # read, not agreed: the yes that books is asked for
    assert text(read) == "To book Tuesday 5 March at 15:00, please reply yes. Or tell me another day or time."
    assert await sched.booked(patient) == []
    done = await sched.say(patient, "yes")
    assert text(done) == "Your appointment is booked for Tuesday 5 March at 15:00."
    assert [a["start"] for a in await sched.booked(patient)] == ["2030-03-05T15:00:00Z"]


async def test_any_morning_next_week_and_the_14th(sched):
    patient = await sched.patient()
    await sched.open(patient)
    offered = await sched.say(patient, "any morning next week")
    assert "1. Monday 11 March at 09:00\n2. Monday 11 March at 10:00\n3. Tuesday 12 March at 09:00" in text(offered)
    offered = await sched.say(patient, "hmm, what about the 14th")
    assert "1. Thursday 14 March at 09:00\n2. Thursday 14 March at 10:00\n3. Thursday 14 March at 14:00" in text(offered)
    asked = await sched.say(patient, "3")
    assert "Thursday 14 March at 14:00" in text(asked)
    await sched.say(patient, "yes")
    assert [a["start"] for a in await sched.booked(patient)] == ["2030-03-14T14:00:00Z"]


async def test_change_of_mind_before_booking(sched):
    patient = await sched.patient()
    await sched.open(patient)
    first = await sched.say(patient, "1")
    assert "Monday 4 March at 09:00" in text(first)
    changed = await sched.say(patient, "actually, Thursday would be better")
    assert "Thursday 7 March at 09:00" in text(changed) and "Shall I book" not in text(changed)
    asked = await sched.say(patient, "3")
    assert "Shall I book Thursday 7 March at 14:00" in text(asked)
    done = await sched.say(patient, "yes")
    assert text(done) == "Your appointment is booked for Thursday 7 March at 14:00."
    assert [a["slot"] for a in await sched.appointments(patient)] == [slot_ref(sched, 7, 14)]
    assert await sched.slot_status(sched.grid[slot_time(4, 9)]) == "free"       # the first choice was not booked
    # the released hold: another patient can take Monday 09:00 now
    other = await sched.patient("Other")
    await book(sched, other, choice="1", expect="Monday 4 March at 09:00")


async def test_no_then_other_choice(sched):
    patient = await sched.patient()
    await sched.open(patient)
    await sched.say(patient, "1")
    declined = await sched.say(patient, "no")
    assert "No problem." in text(declined) and "1. Monday 4 March at 09:00" in text(declined)
    assert await sched.booked(patient) == []
    asked = await sched.say(patient, "3")
    assert "Monday 4 March at 14:00" in text(asked)
    await sched.say(patient, "yes")
    assert [a["start"] for a in await sched.booked(patient)] == ["2030-03-04T14:00:00Z"]


async def test_change_of_mind_after_booking(sched):
    patient = await sched.patient()
    await book(sched, patient)
    offered = await sched.say(patient, "Sorry, can we do Friday morning instead?")
    assert "1. Friday 8 March at 09:00\n2. Friday 8 March at 10:00" in text(offered)
    asked = await sched.say(patient, "2")
    assert "Shall I book Friday 8 March at 10:00" in text(asked)
    done = await sched.say(patient, "yes")
    assert text(done) == ("Your appointment is booked for Friday 8 March at 10:00. "
                          "Your previous appointment on Monday 4 March at 10:00 is cancelled.")
    by_status = {a["status"]: a for a in await sched.appointments(patient)}
    assert by_status["booked"]["slot"] == slot_ref(sched, 8, 10)
    assert by_status["cancelled"]["slot"] == slot_ref(sched, 4, 10)
    assert await sched.slot_status(sched.grid[slot_time(4, 10)]) == "free"
    assert await sched.slot_status(sched.grid[slot_time(8, 10)]) == "busy"


async def test_interruption_with_unrelated_question(sched):
    patient = await sched.patient()
    await sched.open(patient)
    parking = await sched.say(patient, "Where do I park when I get there?")
    assert text(parking).startswith(render.say("logistics_missing"))     # the tenant set no parking text
    assert "1. Monday 4 March at 09:00" in text(parking)             # back to the open question
    sched.registry(clinic_parking="Park in garage B, level 2; bring your ticket to reception.")
    again = await sched.say(patient, "and is parking free?")
    assert text(again).startswith("Park in garage B, level 2")
    asked = await sched.say(patient, "1")
    assert "Shall I book Monday 4 March at 09:00" in text(asked)
    redirected = await sched.say(patient, "Will the doctor check my blood results?")
    assert render.REDIRECT in text(redirected) and "Shall I book Monday 4 March at 09:00" in text(redirected)
    done = await sched.say(patient, "yes")
    assert text(done) == "Your appointment is booked for Monday 4 March at 09:00."
    assert len(await sched.booked(patient)) == 1


async def test_ambiguous_dates_are_clarified_not_guessed(sched):
    patient = await sched.patient()
    await sched.open(patient)
    first = await sched.say(patient, "can I come on 3/4?")
    assert "not sure which date" in text(first) and "either way" in text(first)
    second = await sched.say(patient, "Tuesday the 15th then")
    assert "not sure which date" in text(second) and "Friday" in text(second)
    asked = await sched.say(patient, "Friday 15 March at 10am")
    assert text(asked) == "Shall I book Friday 15 March at 10:00 for you? Please reply yes or no."
    await sched.say(patient, "yes")
    assert [a["start"] for a in await sched.booked(patient)] == ["2030-03-15T10:00:00Z"]


async def test_cancel_after_booking(sched):
    patient = await sched.patient()
    await book(sched, patient)
    asked = await sched.say(patient, "I need to cancel my appointment")
    assert text(asked) == ("Do you want me to cancel your appointment on Monday 4 March at 10:00? "
                           "Please reply yes or no.")
    assert len(await sched.booked(patient)) == 1
    done = await sched.say(patient, "yes")
    assert text(done) == "Your appointment on Monday 4 March at 10:00 is cancelled."
    assert [a["status"] for a in await sched.appointments(patient)] == ["cancelled"]
    assert await sched.slot_status(sched.grid[slot_time(4, 10)]) == "free"
    nothing = await sched.say(patient, "cancel my appointment")
    assert text(nothing) == render.NO_APPOINTMENT


async def test_cancel_declined_keeps_the_appointment(sched):
    patient = await sched.patient()
    await book(sched, patient)
    await sched.say(patient, "please cancel")
    kept = await sched.say(patient, "no")
    assert "leave your appointment on Monday 4 March at 10:00" in text(kept)
    assert len(await sched.booked(patient)) == 1


async def test_patient_initiated_reschedule_in_a_new_process(sched):
    patient = await sched.patient()
    await book(sched, patient)
    # the conversation state is gone (e.g. expired): the agent finds the appointment through tools
    await sched.agent.store.client(sched.tenant).delete(f"vigil:{sched.tenant}:conversation:{patient}")
    sched.new_agent()
    offered = await sched.say(patient, "I need to move my infusion to Wednesday afternoon")
    assert "1. Wednesday 6 March at 14:00\n2. Wednesday 6 March at 15:00" in text(offered)
    await sched.say(patient, "1")
    done = await sched.say(patient, "yes")
    assert "booked for Wednesday 6 March at 14:00" in text(done)
    assert "previous appointment on Monday 4 March at 10:00 is cancelled" in text(done)
    assert sorted((a["status"], a["start"]) for a in await sched.appointments(patient)) == [
        ("booked", "2030-03-06T14:00:00Z"), ("cancelled", "2030-03-04T10:00:00Z")]


async def test_two_patients_race_for_the_last_slot(sched):
    owner = await sched.practitioner()
    (last,) = (await sched.slots(owner, [slot_time(20, 9)])).values()
    a, b = await sched.patient("Racer"), await sched.patient("Rival")
    for p in (a, b):
        opened = await sched.open(p, owner=f"Practitioner/{owner}", within_days=30)
        assert text(opened).count("Wednesday 20 March at 09:00") == 1
    picks = await asyncio.gather(sched.say(a, "1"), sched.say(b, "1"))
    winners = [i for i, r in enumerate(picks) if "Shall I book Wednesday 20 March at 09:00" in text(r)]
    assert len(winners) == 1
    loser = picks[1 - winners[0]]
    assert "just taken by someone else" in text(loser)
    winner = (a, b)[winners[0]]
    loser_patient = (a, b)[1 - winners[0]]
    answers = await asyncio.gather(sched.say(winner, "yes"), sched.say(loser_patient, "yes"))
    assert text(answers[0]) == "Your appointment is booked for Wednesday 20 March at 09:00."
    assert not CLAIM.search(text(answers[1]))
    on_slot = await sched.ehr.client.search("Appointment", {"slot": f"Slot/{last}"})
    assert [x["participant"][0]["actor"]["reference"] for x in on_slot] == [f"Patient/{winner}"]
    assert await sched.booked(loser_patient) == []


async def test_concurrent_book_calls_without_holds_book_once(sched):
    """The EHR's 409 is the last line: two conversations booking one free slot at the same instant."""
    from services.scheduling.toolbox import Toolbox

    owner = await sched.practitioner()
    (slot,) = (await sched.slots(owner, [slot_time(21, 9)])).values()
    a, b = await sched.patient(), await sched.patient()
    tools = Toolbox(sched.agents[0][2], sched.tenant)
    results = await asyncio.gather(tools.book("race-a", slot, a, "conv-a"), tools.book("race-b", slot, b, "conv-b"))
    assert sorted(r.status for r in results) == ["conflict", "verified"]
    assert len(await sched.ehr.client.search("Appointment", {"slot": f"Slot/{slot}"})) == 1


async def test_same_message_delivered_twice(sched):
    patient = await sched.patient()
    await sched.open(patient)
    await sched.say(patient, "2")
    communication, version = await sched.write_message(patient, "yes")
    first, second = await asyncio.gather(sched.agent.on_message(sched.tenant, communication, version),
                                         sched.agent.on_message(sched.tenant, communication, version))
    done = [r for r in (first, second) if not r.duplicate]
    assert len(done) == 1 and text(done[0]) == "Your appointment is booked for Monday 4 March at 10:00."
    third = await sched.agent.on_message(sched.tenant, communication, version)
    assert third.duplicate and third.sent == []
    assert len(await sched.booked(patient)) == 1
    assert len(await sched.messages_to(patient)) == 3           # offers, question, one confirmation
    # the follow-up request redelivered: no second conversation opening
    again = await sched.open(patient)
    assert again.duplicate and again.sent == []


async def test_turn_rerun_after_a_crash_replays_the_ledger(sched):
    """A turn whose state was not saved (crash after the side effects) runs again with the same keys."""
    patient = await sched.patient()
    await sched.open(patient)
    await sched.say(patient, "2")
    store = sched.agent.store
    saved = await store.load(sched.tenant, patient)
    communication, version = await sched.write_message(patient, "yes")
    first = await sched.agent.on_message(sched.tenant, communication, version)
    await store.save(sched.tenant, saved)                         # as if the process died before saving
    sched.new_agent()
    rerun = await sched.agent.on_message(sched.tenant, communication, version)
    assert text(rerun) == text(first) == "Your appointment is booked for Monday 4 March at 10:00."
    assert rerun.sent == first.sent                                # the same Communication, not a new one
    assert len(await sched.appointments(patient)) == 1


async def test_service_restarted_mid_conversation(sched):
    patient = await sched.patient()
    first_agent = sched.agent
    await sched.open(patient)
    asked = await sched.say(patient, "tomorrow afternoon")
    assert "Tuesday 5 March at 14:00" in text(asked)
    await sched.close_agent(first_agent)
    second_agent = sched.new_agent()
    assert second_agent is not first_agent
    store = sched.agents[-1][1]
    blob = await store.raw(sched.tenant, patient)
    assert blob.startswith(b"VGE") and b"afternoon" not in blob and patient.encode() not in blob
    assert 0 < await store.client(sched.tenant).ttl(f"vigil:{sched.tenant}:conversation:{patient}")
    picked = await sched.say(patient, "2")
    assert "Shall I book Tuesday 5 March at 15:00" in text(picked)
    done = await sched.say(patient, "yes")
    assert text(done) == "Your appointment is booked for Tuesday 5 March at 15:00."
    assert [a["start"] for a in await sched.booked(patient)] == ["2030-03-05T15:00:00Z"]


async def test_urgent_symptoms_go_to_staff_and_nothing_is_booked(sched):
    patient = await sched.patient()
    await sched.open(patient)
    await sched.say(patient, "1")
    urgent = await sched.say(patient, "yes but I have had severe diarrhea since yesterday and chest pain")
    assert text(urgent) == render.URGENT_REPLY
    assert len(urgent.tasks) == 1
    (task,) = await sched.tasks(patient)
    assert task["priority"] == "urgent" and task["businessStatus"]["text"] == "urgent-symptoms"
    attached = {i["valueReference"]["reference"] for i in task["input"]}
    assert len(attached) >= 3 and all(ref.startswith("Communication/") for ref in attached)
    assert "diarrhea" not in task["description"]                  # no message text in the Task
    later = await sched.say(patient, "yes")
    assert not CLAIM.search(text(later))
    assert await sched.appointments(patient) == []
    assert await sched.slot_status(sched.grid[slot_time(4, 9)]) == "free"


async def test_not_understood_twice_goes_to_staff(sched):
    patient = await sched.patient()
    await sched.open(patient)
    reply = await sched.say(patient, "blue elephant")
    assert text(reply) == render.NOT_UNDERSTOOD
    understood = await sched.say(patient, "what times do you have?")        # understood: the count starts again
    assert "1. Monday 4 March at 09:00" in text(understood)
    assert text(await sched.say(patient, "blue elephant")) == render.NOT_UNDERSTOOD
    handed = await sched.say(patient, "purple")
    assert text(handed) == render.SAFETY_HANDOFF and "911" in text(handed)
    (task,) = await sched.tasks(patient)
    assert task["businessStatus"]["text"] == "failed-attempts"
    assert await sched.appointments(patient) == []


async def test_dropped_writes_are_never_confirmed(sched):
    """The EHR acknowledges writes and drops them: the booking is not read back, so it is never
    confirmed; the escalation and the reply cannot be stored either, so the turn fails as retryable
    and, once the EHR holds writes again, the re-run escalates and explains - still no booking."""
    from services.core.errors import RetryableError
    from services.scheduling.toolbox import Toolbox

    patient = await sched.patient()
    await sched.open(patient)
    await sched.say(patient, "2")
    communication, version = await sched.write_message(patient, "yes")   # the patient's message exists
    before = len(await sched.messages_to(patient))
    await sched.ehr.admin.set_faults(sched.tenant, drop_writes=True)       # the turn's writes are dropped
    try:
        with pytest.raises(RetryableError):
            await sched.agent.on_message(sched.tenant, communication, version)
    finally:
        await sched.ehr.admin.clear_faults(sched.tenant)
    assert await sched.appointments(patient) == [] and len(await sched.messages_to(patient)) == before
    assert await sched.slot_status(sched.grid[slot_time(4, 10)]) == "free"
    result = await sched.agent.on_message(sched.tenant, communication, version)     # the stage's retry
    assert not CLAIM.search(text(result))
    assert "could not complete the booking" in text(result)
    (task,) = await sched.tasks(patient)
    assert task["businessStatus"]["text"] == "booking-unverified" and task["priority"] == "urgent"
    assert await sched.appointments(patient) == []
    record = await Toolbox(sched.agents[-1][2], sched.tenant).action(f"{result.conversation_id}:"
                                                                     f"{communication}.{version}:book")
    assert record.status == "unverified" and record.reason == "not_read_back"
