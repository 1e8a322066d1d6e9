"""Seeded oncology panel, Appointment/$find and Appointment/$book (no double booking)."""
from __future__ import annotations

import asyncio
import base64

import pytest

from services.core.errors import ConflictError

pytestmark = pytest.mark.integration


async def test_seed_panel_and_find_and_book(ehr_tenant):
    summary = await ehr_tenant.seed(synthea=False, notes=4)
    c = ehr_tenant.client
    onc = summary["oncology"]
    assert len(onc["patients"]) == 6 and len(onc["oncologists"]) == 3 and onc["slots"] > 0
    # immunotherapy orders are searchable by RxNorm code
    pembro = await c.search("MedicationRequest", {"code": "http://www.nlm.nih.gov/research/umls/rxnorm|1547545"})
    assert len(pembro) == 2 and all(m["status"] == "active" for m in pembro)
    team = (await c.search("CareTeam", {"patient": onc["patients"][0]}))[0]
    assert team["participant"][0]["member"]["reference"] == f"Practitioner/{onc['oncologists'][0]}"
    notes = await c.search("DocumentReference", {"patient": onc["patients"][0]})
    text = base64.b64decode(notes[0]["content"][0]["attachment"]["data"]).decode()
    assert notes[0]["content"][0]["attachment"]["contentType"].startswith("text/plain") and "stools" in text
    # seeding again changes nothing (identifiers + ifNoneExist)
    again = await ehr_tenant.seed(synthea=False, notes=4)
    assert again["oncology"]["patients"] == onc["patients"]
    assert (await c.search_page("Slot", {"_summary": "count"}))["total"] == onc["slots"]

    oncologist = onc["oncologists"][1]
    found = await c.find_appointments({"practitioner": oncologist, "_count": "5"})
    proposals = [e["resource"] for e in found["entry"]]
    assert len(proposals) == 5 and all(p["status"] == "proposed" for p in proposals)
    assert proposals == sorted(proposals, key=lambda p: p["start"])
    assert proposals[0]["participant"][0]["actor"]["reference"] == f"Practitioner/{oncologist}"

    appointment = {**proposals[0], "participant": proposals[0]["participant"] + [
        {"actor": {"reference": f"Patient/{onc['patients'][1]}"}, "status": "accepted"}]}
    booked = await c.book(appointment)
    assert booked["status"] == "booked" and booked["slot"] == proposals[0]["slot"]
    slot_id = proposals[0]["slot"][0]["reference"].split("/")[1]
    slot = await c.read("Slot", slot_id)
    assert slot["status"] == "busy" and slot["meta"]["versionId"] == "2"
    with pytest.raises(ConflictError) as second:
        await c.book(appointment)
    assert second.value.status == 409 and second.value.outcome["resourceType"] == "OperationOutcome"
    refound = await c.find_appointments({"practitioner": oncologist, "_count": "5"})
    assert proposals[0]["slot"] not in [e["resource"]["slot"] for e in refound["entry"]]
    assert len(await c.search("Appointment", {"patient": onc["patients"][1]})) == 1

    # racing bookings of one slot: exactly one wins
    contested = proposals[1]
    results = await asyncio.gather(*(c.book(contested) for _ in range(6)), return_exceptions=True)
    assert sum(isinstance(r, dict) for r in results) == 1
    assert all(isinstance(r, ConflictError) for r in results if not isinstance(r, dict))
    assert len(await c.search("Appointment", {"slot": contested["slot"][0]["reference"]})) == 1


async def test_book_rejects_bad_requests(ehr_tenant):
    c = ehr_tenant.client
    from services.core.errors import FatalError, NotFoundError

    with pytest.raises(FatalError) as no_slot:
        await c.book({"resourceType": "Appointment", "status": "proposed", "participant": []})
    assert no_slot.value.status == 400
    with pytest.raises(NotFoundError):
        await c.book({"resourceType": "Appointment", "status": "proposed", "slot": [{"reference": "Slot/nope"}],
                      "participant": [{"status": "accepted", "actor": {"reference": "Patient/x"}}]})
