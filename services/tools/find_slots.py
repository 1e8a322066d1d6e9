"""FindSlots: free slots (``Appointment/$find``) filtered by service type, weekday and part of day
in the clinic's time zone, without the slots other conversations hold."""
from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.core.errors import ValidationError, VigilError
from services.core.logging import get_logger
from services.tools.clients import check_id, ehr_refused
from services.tools.scheduling_base import SchedulingDeps, fhir_instant, parse_instant
from vigil.v1 import tools_pb2

log = get_logger("vigil.tools.find_slots")

DEFAULT_LIMIT = 10
MAX_LIMIT = 50
MAX_WINDOW = timedelta(days=120)
#: $find page size: enough free slots to filter by weekday / part of day (the sandbox's maximum page).
FIND_COUNT = 200
#: Parts of the day as [start hour, end hour) in the clinic's time zone.
PARTS_OF_DAY = {"morning": (0, 12), "afternoon": (12, 17), "evening": (17, 24)}


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError("time_zone must be an IANA time zone name", code="bad_time_zone") from None


def service_matches(wanted: str, service_types: list[dict]) -> bool:
    if not wanted:
        return True
    wanted = wanted.lower()
    for concept in service_types or ():
        names = [concept.get("text") or ""] + [c.get(k) or "" for c in concept.get("coding") or ()
                                               for k in ("code", "display")]
        if any(wanted in name.lower() for name in names):
            return True
    return False


class FindSlots:
    def __init__(self, deps: SchedulingDeps):
        self.deps = deps

    async def __call__(self, request: tools_pb2.FindSlotsRequest, context) -> tools_pb2.SlotList:
        tenant = self.deps.tenant()
        start, end = parse_instant("start", request.start), parse_instant("end", request.end)
        if not start < end or end - start > MAX_WINDOW:
            raise ValidationError(f"the window must be non-empty and at most {MAX_WINDOW.days} days", code="bad_window")
        if request.part_of_day and request.part_of_day not in PARTS_OF_DAY:
            raise ValidationError(f"part_of_day must be one of {', '.join(PARTS_OF_DAY)}", code="bad_part_of_day")
        if any(not 0 <= d <= 6 for d in request.weekdays):
            raise ValidationError("weekdays are 0 (Monday) .. 6 (Sunday)", code="bad_weekday")
        tz = zone(request.time_zone)
        limit = min(request.limit or DEFAULT_LIMIT, MAX_LIMIT)
        params = {"start": fhir_instant(start), "end": fhir_instant(end), "_count": str(FIND_COUNT)}
        if request.practitioner_id:
            params["practitioner"] = check_id("practitioner_id", request.practitioner_id)
        client = await self.deps.fhir.client(tenant)
        try:
            bundle = await client.find_appointments(params)
        except VigilError as exc:
            raise ehr_refused(exc) from None
        candidates = []
        for entry in bundle.get("entry") or ():
            proposal = entry.get("resource") or {}
            local = parse_instant("start", proposal["start"]).astimezone(tz)
            if request.weekdays and local.weekday() not in request.weekdays:
                continue
            if request.part_of_day:
                low, high = PARTS_OF_DAY[request.part_of_day]
                if not low <= local.hour < high:
                    continue
            if not service_matches(request.service_type, proposal.get("serviceType") or []):
                continue
            candidates.append(proposal)
        slot_ids = [p["slot"][0]["reference"].split("/", 1)[1] for p in candidates]
        holders = await self.deps.holds.holders(tenant.id, slot_ids)
        offers = []
        for proposal, slot_id, holder in zip(candidates, slot_ids, holders):
            if holder and holder != request.holder:
                continue
            offers.append(tools_pb2.SlotOffer(
                slot_id=slot_id, start=proposal["start"], end=proposal["end"],
                practitioner_refs=[(p.get("actor") or {}).get("reference", "") for p in proposal.get("participant") or ()
                                   if (p.get("actor") or {}).get("reference", "").startswith("Practitioner/")],
                service_type=((proposal.get("serviceType") or [{}])[0]).get("text") or ""))
            if len(offers) >= limit:
                break
        log.info("tools.find_slots", tenant=tenant.id, offered=len(offers), candidates=len(candidates))
        return tools_pb2.SlotList(slots=offers)
