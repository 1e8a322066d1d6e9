"""Scripted multi-turn conversations with the deterministic engine, against the real EHR sandbox,
tools over gRPC, Redis and PostgreSQL: every test asserts the replies and the final EHR state.
The agent's clock is Monday 4 March 2030 08:00 UTC; the grid has weekday slots at 09, 10, 14, 15."""
from __future__ import annotations

import asyncio
import re

from tests.integration.scheduling.conftest import slot_time

CLAIM = re.compile(r"\b(booked|confirmed|cancelled|rescheduled)\b", re.IGNORECASE)


def text(result) -> str:
    return "\n".join(result.texts)


async def book_second_offer(sched, patient):
    opened = await sched.open(patient)
    assert "1. Monday 4 March at 09:00" in text(opened)
    asked = await sched.say(patient, "2")
    assert "Shall I book Monday 4 March at 10:00" in text(asked)
    done = await sched.say(patient, "yes")
    return done


async def test_simple_booking(sched):
    patient = await sched.patient()
    opened = await sched.open(patient)
    assert text(opened).count("\n") >= 3 and "follow-up visit" in text(opened)
    done = await book_second_offer.__wrapped__(sched, patient) if hasattr(book_second_offer, "__wrapped__") else None
    assert done is None
    asked = await sched.say(patient, "2")
    assert "Shall I book Monday 4 March at 10:00" in text(asked)
    assert not CLAIM.search(text(asked))
    done = await sched.say(patient, "yes please")
    assert text(done) == "Your appointment is booked for Monday 4 March at 10:00."
    booked = await sched.booked(patient)
    assert len(booked) == 1 and booked[0]["start"] == "2030-03-04T10:00:00Z"
    assert booked[0]["slot"] == [{"reference": f"Slot/{sched.grid[slot_time(4, 10)]}"}]
    assert await sched.slot_status(sched.grid[slot_time(4, 10)]) == "busy"
    # every reply is a Communication to the patient in the EHR
    assert len(await sched.messages_to(patient)) == len(opened.sent) + len(asked.sent) + len(done.sent) == 3
