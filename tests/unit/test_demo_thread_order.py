"""The demo's simulated patients read a conversation in time order, whatever the timestamps' precision."""
from __future__ import annotations

from services.commands.demo.driver import _sent_order


def _message(sender: str, sent: str | None, updated: str) -> dict:
    message = {"sender": {"reference": sender}, "meta": {"lastUpdated": updated}}
    if sent:
        message["sent"] = sent
    return message


def test_a_reply_in_the_same_second_as_the_agents_next_message_comes_first():
    patient = _message("Patient/p1", "2026-11-22T09:07:45Z", "2026-11-22T09:07:45.301Z")
    agent = _message("Device/agent", "2026-11-22T09:07:45.822136Z", "2026-11-22T09:07:45.830Z")
    assert sorted([patient, agent], key=_sent_order)[-1] is agent
    assert sorted([agent, patient], key=_sent_order)[-1] is agent
    assert sorted([agent["sent"], patient["sent"]])[-1] == patient["sent"]  # as text the order is wrong


def test_a_message_without_sent_is_placed_by_its_last_update():
    early = _message("Patient/p1", None, "2026-11-22T09:00:00Z")
    late = _message("Device/agent", "2026-11-22T09:05:00+00:00", "2026-11-22T09:05:01Z")
    assert sorted([late, early], key=_sent_order) == [early, late]
