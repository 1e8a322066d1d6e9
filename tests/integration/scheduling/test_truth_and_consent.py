"""The EHR as the truth (staff-side changes seen on the next turn and through the appointment
subscription, told once), explicit consent (hedges keep the offer open; the yes is in the ledger;
offers re-validated before the question), and the patient's language - against the EHR sandbox,
tools over gRPC, Redis and PostgreSQL. Clock: Monday 4 March 2030 08:00 UTC."""
from __future__ import annotations

from services.scheduling import render
from services.tools.action_ledger import ActionLedger
from tests.integration.scheduling.conftest import slot_time
from tests.integration.scheduling.corpus import staff_action


def text(result) -> str:
    return "\n".join(result.texts)


async def booked_on_monday_10(sched):
    patient = await sched.patient()
    await sched.open(patient)
    await sched.say(patient, "2")
    done = await sched.say(patient, "yes")
    assert text(done) == "Your appointment is booked for Monday 4 March at 10:00."
    return patient


async def test_staff_cancellation_is_seen_on_the_next_turn_and_told_once(sched):
    patient = await booked_on_monday_10(sched)
    assert await staff_action(sched, patient, "cancel_appointment", []) is not None      # no event delivered
    asked = await sched.say(patient, "I need to cancel my appointment")
    assert "Monday 4 March at 10:00 has been cancelled by the clinic" in text(asked)
    assert "Do you want me to cancel" not in text(asked)
    assert render.NO_APPOINTMENT in text(asked)
    after = await sched.say(patient, "no")
    assert "leave your appointment" not in text(after) and "cancelled by the clinic" not in text(after)
    status = await sched.say(patient, "when is my appointment?")
    assert text(status) == render.NO_APPOINTMENT


async def test_staff_reschedule_through_the_subscription_is_told_once(sched):
    patient = await booked_on_monday_10(sched)
    moved = await staff_action(sched, patient, "reschedule_appointment", [sched.grid[slot_time(12, 14)]])
    notice = await sched.agent.on_appointment(sched.tenant, moved["id"], moved["meta"]["versionId"], patient)
    assert text(notice) == ("Update from the clinic: your appointment on Monday 4 March at 10:00 has been moved by "
                            "the clinic to Tuesday 12 March at 14:00.")
    again = await sched.agent.on_appointment(sched.tenant, moved["id"], moved["meta"]["versionId"], patient)
    assert again.duplicate and again.sent == []
    status = await sched.say(patient, "when is my appointment?")
    assert text(status) == "Your upcoming appointments: Tuesday 12 March at 14:00."        # no second notice
    cancel = await sched.say(patient, "please cancel it")
    assert text(cancel) == ("Do you want me to cancel your appointment on Tuesday 12 March at 14:00? "
                            "Please reply yes or no.")


async def test_our_own_booking_event_is_not_a_staff_change(sched):
    patient = await booked_on_monday_10(sched)
    (appointment,) = await sched.booked(patient)
    event = await sched.agent.on_appointment(sched.tenant, appointment["id"], appointment["meta"]["versionId"], patient)
    assert event.sent == []


async def test_no_show_is_told_and_no_appointment_is_claimed(sched):
    patient = await booked_on_monday_10(sched)
    changed = await staff_action(sched, patient, "mark_no_show", [])
    notice = await sched.agent.on_appointment(sched.tenant, changed["id"], changed["meta"]["versionId"], patient)
    assert "Monday 4 March at 10:00 as missed" in text(notice)
    status = await sched.say(patient, "do I still have an appointment?")
    assert text(status) == render.NO_APPOINTMENT


async def test_hedge_keeps_the_offer_open_and_the_yes_is_in_the_ledger(sched):
    patient = await sched.patient()
    await sched.open(patient)
    await sched.say(patient, "1")
    hedged = await sched.say(patient, "Yeah maybe, I need to check with my daughter first")
    assert "I have not made any booking yet: Monday 4 March at 09:00 stays on offer" in text(hedged)
    assert await sched.appointments(patient) == []
    communication, version = await sched.write_message(patient, "yes please")
    done = await sched.agent.on_message(sched.tenant, communication, version)
    assert text(done) == "Your appointment is booked for Monday 4 March at 09:00."
    consent = await ActionLedger(sched.pools).get(sched.tenant, f"{done.conversation_id}:{communication}.{version}:consent")
    assert consent["kind"] == "consent" and consent["status"] == "verified" and consent["reason"] == "book"
    assert consent["slot_id"] == sched.grid[slot_time(4, 9)] and consent["start"] == "2030-03-04T09:00:00Z"
    async with sched.pools.tx(sched.tenant, readonly=True) as conn:
        request = await conn.fetchval("SELECT request FROM vigil_scheduling_actions WHERE tenant = $1 AND key = $2",
                                      sched.tenant, consent["idempotency_key"])
    assert f"Communication/{communication}/_history/{version}" in request and "yes please" not in request


async def test_an_offer_taken_meanwhile_is_not_proposed(sched):
    patient, other = await sched.patient(), await sched.patient("Other")
    await sched.open(patient)
    taken = sched.grid[slot_time(4, 9)]
    await sched.ehr.client.book({"resourceType": "Appointment", "status": "booked", "slot": [{"reference": f"Slot/{taken}"}],
                                 "participant": [{"actor": {"reference": f"Patient/{other}"}, "status": "accepted"}]})
    picked = await sched.say(patient, "1")
    assert "just taken by someone else" in text(picked) and "Shall I book Monday 4 March at 09:00" not in text(picked)
    assert "1. Monday 4 March at 10:00" in text(picked)


async def test_spanish_yes_no_and_a_lone_y(sched):
    patient = await sched.patient()
    await sched.open(patient)
    lone = await sched.say(patient, "y")
    assert await sched.appointments(patient) == [] and "reservada" not in text(lone)
    done = await sched.say(patient, "Sí, por favor, el primero")
    assert text(done) == "Su cita queda reservada para el lunes 4 de marzo a las 09:00."
    asked = await sched.say(patient, "No, todavía no quiero la cita")
    assert text(asked) == "¿Quiere que anule su cita del lunes 4 de marzo a las 09:00? Responda sí o no, por favor."
    assert len(await sched.booked(patient)) == 1
    kept = await sched.say(patient, "déjame pensarlo")
    assert "sigue como está" in text(kept) and len(await sched.booked(patient)) == 1
    cancelled = await sched.say(patient, "sí")
    assert text(cancelled) == "Su cita del lunes 4 de marzo a las 09:00 queda cancelada."
    assert [a["status"] for a in await sched.appointments(patient)] == ["cancelled"]


async def test_spanish_urgent_symptoms_and_a_request_for_a_nurse(sched):
    patient = await sched.patient()
    await sched.open(patient)
    urgent = await sched.say(patient, "Tengo dolor en el pecho y diarrea con sangre")
    assert text(urgent) == render.say("urgent_reply", "es")
    (task,) = await sched.tasks(patient)
    assert task["priority"] == "urgent" and task["businessStatus"]["text"] == "urgent-symptoms"
    other = await sched.patient("Other")
    await sched.open(other)
    nurse = await sched.say(other, "¿Me puede llamar una enfermera?")
    assert text(nurse) == render.say("staff_requested", "es") and "911" in text(nurse)
    assert [t["businessStatus"]["text"] for t in await sched.tasks(other)] == ["patient-request"]


async def test_an_undeclared_language_goes_to_staff_never_as_a_yes(sched):
    patient = await sched.patient()
    await sched.open(patient)
    await sched.say(patient, "1")
    result = await sched.say(patient, "oui, le premier rendez-vous me convient, merci")
    assert render.say("safety_handoff", "en") in text(result) and render.say("safety_handoff", "es") in text(result)
    assert [t["businessStatus"]["text"] for t in await sched.tasks(patient)] == ["other-language"]
    assert await sched.appointments(patient) == []
    assert await sched.slot_status(sched.grid[slot_time(4, 9)]) == "free"
    sched.registry(scheduling_languages="en")
    sched.new_agent()
    spanish = await sched.say(patient, "sí, quiero el primero por favor")
    assert [t["businessStatus"]["text"] for t in await sched.tasks(patient)] == ["other-language", "other-language"]
    assert await sched.appointments(patient) == [] and "reservada" not in text(spanish)


async def test_thanks_logistics_and_long_messages_after_a_booking(sched):
    sched.registry(clinic_parking="Parking is in garage B.", clinic_what_to_bring="Bring your photo ID.")
    sched.new_agent()
    patient = await booked_on_monday_10(sched)
    thanks = await sched.say(patient, "Thank you!")
    assert text(thanks) == render.say("thanks_close")
    parking = await sched.say(patient, "Where do I park?")
    assert text(parking) == "Parking is in garage B."
    bring = await sched.say(patient, "what should i bring")
    assert text(bring) == "Bring your photo ID."
    long = await sched.say(patient, "word " * 300)
    assert text(long) == render.SAFETY_HANDOFF and "find a time" not in text(long)
    assert len(await sched.booked(patient)) == 1


async def test_a_yes_naming_one_offer_or_the_one_appointment_acts_at_once(sched):
    patient = await sched.patient()
    await sched.open(patient)
    communication, version = await sched.write_message(patient, "yes please book the second one")
    done = await sched.agent.on_message(sched.tenant, communication, version)
    assert text(done) == "Your appointment is booked for Monday 4 March at 10:00."
    consent = await ActionLedger(sched.pools).get(sched.tenant, f"{done.conversation_id}:{communication}.{version}:consent")
    assert consent["slot_id"] == sched.grid[slot_time(4, 10)] and consent["reason"] == "book"
    again = await sched.say(patient, "yes please book the second one")            # sent twice: one booking
    assert len(await sched.booked(patient)) == 1 and "booked for" not in text(again)
    cancelled = await sched.say(patient, "yes please cancel it")
    assert text(cancelled) == "Your appointment on Monday 4 March at 10:00 is cancelled."


async def test_yes_cancel_with_two_appointments_asks_which_is_meant(sched):
    patient = await booked_on_monday_10(sched)
    other = sched.grid[slot_time(6, 14)]
    await sched.ehr.client.book({"resourceType": "Appointment", "status": "booked", "slot": [{"reference": f"Slot/{other}"}],
                                 "participant": [{"actor": {"reference": f"Patient/{patient}"}, "status": "accepted"}]})
    asked = await sched.say(patient, "yes please cancel it")
    assert text(asked) == "Do you want me to cancel your appointment on Monday 4 March at 10:00? Please reply yes or no."
    assert len(await sched.booked(patient)) == 2


async def test_a_pause_keeps_the_offer_open_and_books_nothing(sched):
    patient = await sched.patient()
    await sched.open(patient)
    await sched.say(patient, "1")
    for pause in ("ok one sec", "un momento", "ok wait"):
        held = await sched.say(patient, pause)
        assert await sched.appointments(patient) == [], pause
        assert "booked" not in text(held) and "reservada" not in text(held)
    done = await sched.say(patient, "yes")
    assert text(done) == "Your appointment is booked for Monday 4 March at 09:00."


async def test_after_a_message_in_portuguese_a_yes_is_not_a_yes_to_the_withdrawn_offer(sched):
    patient = await sched.patient()
    await sched.open(patient)
    await sched.say(patient, "Quiero el segundo horario")
    other = await sched.say(patient, "Bom dia, sou a vizinha da dona Carmen. Ela disse que pode ser o segundo "
                                     "horário, tá bom?")
    assert render.say("safety_handoff", "es") in text(other)
    assert [t["businessStatus"]["text"] for t in await sched.tasks(patient)] == ["other-language"]
    yes = await sched.say(patient, "Sí, ese")
    assert await sched.appointments(patient) == [] and "reservada" not in text(yes)
    assert await sched.slot_status(sched.grid[slot_time(4, 10)]) == "free"
    sim = await sched.say(patient, "claro que sim")
    assert await sched.appointments(patient) == [] and "reservada" not in text(sim)
    assert [t["businessStatus"]["text"] for t in await sched.tasks(patient)] == ["other-language", "other-language"]


async def test_misspelt_breathing_memory_and_a_bare_symptom_report_go_to_staff(sched):
    for message in ("cant catch my breth", "I keep forgetting where I am", "my rash is spreading",
                    "mi mamá no está hablando con sentido hoy"):
        patient = await sched.patient()
        await sched.open(patient)
        reply = await sched.say(patient, message)
        assert "911" in text(reply), message
        (task,) = await sched.tasks(patient)
        assert task["priority"] == "urgent" and task["businessStatus"]["text"] == "urgent-symptoms"
        assert await sched.appointments(patient) == []


async def test_status_questions_are_answered_from_the_ehr(sched):
    patient = await booked_on_monday_10(sched)
    for question in ("When's my appointment?", "¿Me confirma la hora de mi cita?"):
        status = await sched.say(patient, question)
        assert "4 March at 10:00" in text(status) or "4 de marzo a las 10:00" in text(status), question
