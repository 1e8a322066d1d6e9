"""Scheduling operations in the style of IHE ITI Scheduling: ``Appointment/$find`` proposes
appointments from free Slots; ``Appointment/$book`` books one, marking its Slots busy in the
same transaction (a Slot that is no longer free makes the booking fail with 409)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

from services.ehr import search
from services.ehr.config import MAX_PAGE_SIZE
from services.ehr.http import context, read_body, read_json, resource_response
from services.ehr.outcome import bad_request, conflict, fhir_response
from services.ehr.validation import validate
from services.ehr.values import date_range, later, whole_number

DEFAULT_WINDOW = timedelta(days=14)
FIND_PARAMS = ("start", "end", "practitioner", "actor", "schedule", "_count")


async def find(request: Request) -> Response:
    """Free slots in [start, end) (default: now .. +14 days), optionally of one actor or schedule,
    as a searchset of proposed Appointments (not stored)."""
    ctx = await context(request)
    ctx.require("Slot", "s")
    ctx.require("Schedule", "s")
    params = list(request.query_params.multi_items())
    if request.method == "POST":
        params += parse_qsl((await read_body(request, form=True)).decode("utf-8", errors="replace"))
    opts = dict(params)
    unknown = set(opts) - set(FIND_PARAMS)
    if unknown:
        raise bad_request(f"$find does not support {sorted(unknown)}; supported: {', '.join(FIND_PARAMS)}")
    now = datetime.now(timezone.utc)
    start = date_range(opts["start"])[1] if "start" in opts else now
    end = date_range(opts["end"])[1] if "end" in opts else later(start, DEFAULT_WINDOW)
    count = whole_number("_count", opts.get("_count", "50"), 1, MAX_PAGE_SIZE, clamp=True)
    actor = opts.get("practitioner") or opts.get("actor")
    async with ctx.store.transaction(ctx.tenant.id) as tx:
        sched_params = [("actor", actor if "/" in actor else f"Practitioner/{actor}")] if actor else []
        if "schedule" in opts:
            sched_params.append(("_id", opts["schedule"].split("/")[-1]))
        _, schedules = await search.run(tx, search.parse("Schedule", sched_params + [("_count", str(MAX_PAGE_SIZE))]))
        schedules = [s for s in schedules if s.content.get("active", True)]
        if not schedules:
            return fhir_response({"resourceType": "Bundle", "type": "searchset", "total": 0})
        by_ref = {f"Schedule/{s.id}": s.content for s in schedules}
        q = search.parse("Slot", [("schedule", ",".join(by_ref)), ("start", f"ge{start.isoformat()}"),
                                  ("start", f"lt{end.isoformat()}"), ("status", "free"), ("_count", str(count))])
        q.sort = "ehr_ts(content->>'start') ASC, id ASC"
        total, slots = await search.run(tx, q)
    entries = []
    for slot in slots:
        schedule = by_ref.get(slot.content["schedule"]["reference"], {})
        appointment = {"resourceType": "Appointment", "status": "proposed", "start": slot.content["start"],
                       "end": slot.content["end"], "slot": [{"reference": f"Slot/{slot.id}"}],
                       "participant": [{"actor": a, "status": "needs-action"} for a in schedule.get("actor", [])]}
        if slot.content.get("serviceType"):
            appointment["serviceType"] = slot.content["serviceType"]
        entries.append({"resource": appointment, "search": {"mode": "match"}})
    return fhir_response({"resourceType": "Bundle", "type": "searchset", "total": total, "entry": entries})


def _appointment_from(body: object) -> dict:
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        for param in body.get("parameter") or []:
            if isinstance(param, dict) and param.get("name") in ("appt-resource", "appointment"):
                body = param.get("resource")
                break
        else:
            raise bad_request("$book Parameters need a parameter 'appt-resource' holding the Appointment")
    if not isinstance(body, dict) or body.get("resourceType") != "Appointment":
        raise bad_request("$book takes an Appointment (or Parameters with appt-resource)")
    return body


async def book(request: Request) -> Response:
    ctx = await context(request)
    ctx.require("Appointment", "c")
    ctx.require("Slot", "u")
    appointment = dict(_appointment_from(await read_json(request)))
    appointment.pop("id", None)
    appointment["status"] = "booked"
    refs = [s.get("reference", "") for s in appointment.get("slot") or [] if isinstance(s, dict)]
    if not refs or any(not r.startswith("Slot/") for r in refs):
        raise bad_request("The Appointment must reference at least one Slot as Slot/<id>")
    async with ctx.store.transaction(ctx.tenant.id, drop_writes=ctx.tenant.faults.drop_writes) as tx:
        slots = []
        for ref in sorted(set(refs)):  # sorted: concurrent bookings lock slots in the same order
            slot_id = ref.split("/", 1)[1]
            await tx.lock("Slot", slot_id)
            slot = await tx.read("Slot", slot_id)
            if slot.content.get("status") != "free":
                raise conflict(f"Slot/{slot_id} is not free (status {slot.content.get('status')})")
            slots.append(slot)
        appointment.setdefault("start", min(s.content["start"] for s in slots))
        appointment.setdefault("end", max(s.content["end"] for s in slots))
        validate(appointment, "Appointment")
        for slot in slots:
            await tx.update("Slot", slot.id, {**slot.content, "status": "busy"}, slot.version)
        stored = await tx.create("Appointment", appointment)
    return resource_response(request, ctx, stored, 201, location=True)
