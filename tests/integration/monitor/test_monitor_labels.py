"""Clinicians' answers become labels in the monitor (the label store is the monitor's): the
inbox's task-updated events and CDS Hooks card feedback, through the real worker, broker and
PostgreSQL; each label once, however often its event arrives."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from services.core import evidence
from services.core.crypto import Keyring
from services.core.events import Event, deterministic_id
from services.monitor.labels import LabelStore
from tests.integration.monitor.conftest import T0, at, decision_event, updated_event, written_event

pytestmark = pytest.mark.integration


async def test_task_actions_and_card_feedback_become_labels_once(mon):
    t = mon.tenant
    patient, task_id = f"p-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex[:12]
    d1, d2 = uuid.uuid4().hex, uuid.uuid4().hex
    actions = [decision_event(t, T0, d1, patient, "colitis"), decision_event(t, T0, d2, patient, "colitis"),
               written_event(t, T0 + timedelta(minutes=5), d1, patient, "colitis", task_id, note_time=T0)]
    override = updated_event(t, T0 + timedelta(hours=1), task_id, patient, "rejected", "not-irae")
    override.data.update(decisions=[d1, d2], clinician="Practitioner/onc-1", category="colitis", grade=2,
                         modelVersion="rules-2026.11")
    ours = updated_event(t, T0 + timedelta(minutes=6), task_id, patient, "requested")   # Vigil's own write
    ours.data.update(decisions=[d1], clinician=None, grade=2, modelVersion="rules-2026.11")
    foreign = updated_event(t, T0 + timedelta(hours=2), "other-task", patient, "completed")  # not a Vigil Task
    comment = "patient had C. diff last month"
    card_time = T0 + timedelta(hours=3)
    card = at(Event.new("vigil.cdshooks.feedback", source=f"/cdshooks/{t}", tenant=t, key=patient,
                        id=deterministic_id(t, "card", "c1"), data={
                            "card": "c1", "patient": patient, "outcome": "overridden", "reason": "wrong-grade",
                            "commentSealed": await evidence.seal_text(Keyring(mon.pools), t, comment),
                            "task": task_id, "decisions": [d2], "clinician": "Practitioner/onc-2",
                            "category": "colitis", "grade": 2, "modelVersion": "rules-2026.11",
                            "time": card_time.isoformat()}), card_time)
    await mon.publish("actions", actions)
    await mon.publish("feedback", [ours, override, override, foreign, card, card])
    store = LabelStore(mon.pools)

    async def labelled():
        rows = await store.since(t, T0 - timedelta(days=1))
        return rows if len(rows) >= 3 else None

    async with mon.worker():
        await mon.wait(labelled, timeout=60)
        await mon.wait(lambda: _counted(mon, 6), timeout=30)   # every feedback delivery handled
    rows = await store.since(t, T0 - timedelta(days=1))
    by_id = {(r["source"], r["decision_id"]): r for r in rows}
    assert len(rows) == 3 and set(by_id) == {("ehr-task", d1), ("ehr-task", d2), ("cds-hooks", d2)}
    inbox = by_id[("ehr-task", d1)]
    assert (inbox["action"], inbox["reason"], inbox["clinician"], inbox["task_id"], inbox["task_version"]) == (
        "overridden", "not-irae", "Practitioner/onc-1", task_id, "2")
    assert (inbox["category"], inbox["grade"], inbox["model_version"], inbox["comment"]) == (
        "colitis", 2, "rules-2026.11", None)
    cds = by_id[("cds-hooks", d2)]
    assert (cds["action"], cds["reason"], cds["comment"], cds["clinician"], cds["time"]) == (
        "overridden", "wrong-grade", comment, "Practitioner/onc-2", card_time)
    assert await store.for_task(t, "other-task") == []


async def _counted(mon, want: int) -> bool:
    async with mon.pools.tx(mon.tenant, readonly=True) as conn:
        n = await conn.fetchval("SELECT count(*) FROM monitor_events WHERE tenant = $1 AND type IN "
                                "('vigil.ehr.task-updated', 'vigil.cdshooks.feedback')", mon.tenant)
    duplicates = await mon.metric("vigil_monitor_duplicates_total")
    return n + duplicates >= want
