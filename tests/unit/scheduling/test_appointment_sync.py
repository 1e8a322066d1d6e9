"""``appointment_sync.sync``: what the EHR holds now against what the conversation last knew -
each kind of staff-side change, told once, and the conversation updated."""
from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from services.scheduling import appointment_sync
from services.scheduling.engine import Turn
from services.scheduling.state import Conversation
from vigil.v1 import tools_pb2

MON_10, TUE_14 = "2030-03-04T10:00:00Z", "2030-03-05T14:00:00Z"


class Tools:
    def __init__(self, *appointments):
        self.found = [tools_pb2.AppointmentInfo(appointment_id=i, status=s, start=t, end=t, slot_id=f"s-{i}")
                      for i, s, t in appointments]

    async def appointments(self, patient):
        return self.found


def turn(tools, language="en") -> Turn:
    return Turn(tools=tools, now=datetime(2030, 3, 4, 8, tzinfo=timezone.utc), tz=ZoneInfo("UTC"), key="c:m",
                language=language)


def booked_conversation(stage="idle") -> Conversation:
    c = Conversation.new("p1")
    c.appointment, c.stage = {"id": "a1", "start": MON_10, "end": MON_10, "slot_id": "s-a1"}, stage
    return c


async def test_nothing_changed_nothing_told():
    c = booked_conversation()
    assert await appointment_sync.sync(c, turn(Tools(("a1", "booked", MON_10)))) == []
    assert c.appointment["id"] == "a1"


async def test_cancelled_by_the_clinic_told_once_and_the_question_dropped():
    c = booked_conversation(stage="confirm-cancel")
    tools = Tools(("a1", "cancelled", MON_10))
    (notice,) = await appointment_sync.sync(c, turn(tools))
    assert notice.startswith("Update from the clinic: your appointment on Monday 4 March at 10:00 has been cancelled")
    assert c.appointment is None and c.stage == "idle"
    assert await appointment_sync.sync(c, turn(tools)) == []


async def test_moved_by_cancelling_and_booking_another():
    c = booked_conversation()
    (notice,) = await appointment_sync.sync(c, turn(Tools(("a1", "cancelled", MON_10), ("a2", "booked", TUE_14)), "es"))
    assert notice == ("Aviso de la clínica: la clínica ha cambiado su cita del lunes 4 de marzo a las 10:00 al "
                      "martes 5 de marzo a las 14:00.")
    assert c.appointment["id"] == "a2"


async def test_moved_in_place_no_show_and_removed():
    c = booked_conversation()
    (moved,) = await appointment_sync.sync(c, turn(Tools(("a1", "booked", TUE_14))))
    assert "moved by the clinic to Tuesday 5 March at 14:00" in moved and c.appointment["start"] == TUE_14
    (missed,) = await appointment_sync.sync(c, turn(Tools(("a1", "noshow", TUE_14))))
    assert "Tuesday 5 March at 14:00 as missed" in missed and c.appointment is None
    c = booked_conversation()
    (removed,) = await appointment_sync.sync(c, turn(Tools()))
    assert "no longer in the clinic's records" in removed and c.appointment is None


async def test_an_appointment_the_conversation_did_not_know_is_adopted_silently():
    c = Conversation.new("p1")
    assert await appointment_sync.sync(c, turn(Tools(("a9", "booked", TUE_14)))) == []
    assert c.appointment["id"] == "a9"
