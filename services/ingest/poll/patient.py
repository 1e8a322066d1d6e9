"""One watched patient's poll: its DocumentReferences changed since the cursor, published once.

``DocumentReference?patient=<id>&_lastUpdated=ge<cursor - overlap>&_sort=_lastUpdated&_count=n``,
every page followed (each page costs a token). The overlap re-reads a few seconds before the
cursor so a note whose transaction committed after a later one was read is not missed; what was
already published is skipped by the ledger. The results are filtered here too, so an EHR that
ignores ``_lastUpdated`` or ``_sort`` (settings ``poll_last_updated`` / ``poll_sort`` false) costs
more pages, never a wrong answer. In one tenant transaction: claim each version (origin ``poll``),
publish the claimed ones, move the cursor to the newest (lastUpdated, id) seen, commit; a failed
publish rolls the claims and the cursor back, so the next round finds the same notes again.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from services.core.errors import FatalError
from services.ingest import events as ev
from services.ingest.ehr import TenantEhr
from services.ingest.poll.bucket import TokenBucket
from services.ingest.poll.settings import PollSettings
from services.ingest.store import ledger, polling

RESOURCE_TYPE = "DocumentReference"
#: Pages followed for one patient in one round: 100 pages x 50 = 5,000 notes changed since the cursor.
MAX_PAGES = 100


@dataclass
class PollResult:
    requests: int = 0
    seen: int = 0
    published: int = 0
    duplicates: int = 0


def _moment(resource: dict) -> datetime | None:
    text = (resource.get("meta") or {}).get("lastUpdated")
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def low_water(watched: polling.Watched, settings: PollSettings) -> datetime:
    """The oldest lastUpdated this poll asks for."""
    if watched.cursor_updated is None:
        return watched.added_at - timedelta(hours=settings.lookback_h)
    return watched.cursor_updated - timedelta(seconds=settings.overlap_s)


def search_params(patient_id: str, low: datetime, settings: PollSettings) -> dict[str, str]:
    params = {"patient": patient_id, "_count": str(settings.page_size)}
    if settings.last_updated:
        params["_lastUpdated"] = "ge" + low.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    if settings.sort:
        params["_sort"] = "_lastUpdated"
    return params


async def changed_notes(ehr: TenantEhr, bucket: TokenBucket, patient_id: str, low: datetime,
                        settings: PollSettings, result: PollResult) -> list[dict]:
    """Every note of the patient with lastUpdated >= low, oldest first (all pages followed)."""
    await bucket.acquire()
    result.requests += 1
    bundle = await ehr.client.search_page(RESOURCE_TYPE, search_params(patient_id, low, settings))
    found: dict[tuple[str, str], tuple[datetime, dict]] = {}
    for page in range(MAX_PAGES):
        for entry in bundle.get("entry") or []:
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(resource, dict) or resource.get("resourceType") != RESOURCE_TYPE \
                    or (entry.get("search") or {}).get("mode", "match") != "match":
                continue
            moment = _moment(resource)
            if moment is None or moment < low or not resource.get("id"):
                continue
            if ev.patient_of(resource) != patient_id:  # an EHR that ignored the patient filter
                continue
            key = (str(resource["id"]), str((resource.get("meta") or {}).get("versionId", "")))
            found[key] = (moment, resource)
        url = ehr.next_url(bundle)
        if url is None:
            break
        if page == MAX_PAGES - 1:
            raise FatalError(f"a patient's notes exceeded {MAX_PAGES} pages in one poll", code="too_many_pages")
        await bucket.acquire()
        result.requests += 1
        bundle = await ehr.page_at(url)
    return [resource for _, resource in sorted(found.values(), key=lambda mr: (mr[0], str(mr[1]["id"])))]


async def poll_patient(tenant: str, watched: polling.Watched, ehr: TenantEhr, bucket: TokenBucket, pools,
                       publishers, settings: PollSettings) -> PollResult:
    result = PollResult()
    notes = await changed_notes(ehr, bucket, watched.patient_id, low_water(watched, settings), settings, result)
    result.seen = len(notes)
    async with pools.tx(tenant) as conn:
        routed = []
        for resource in notes:
            try:
                ref = ev.ref_of(resource)
            except ValueError:
                continue
            if await ledger.claim_version(conn, tenant, ref.resource_type, ref.id, ref.version_id, "poll"):
                action = "create" if ref.version_id == "1" else "update"
                routed.append((ev.EHR_EVENTS, ev.resource_changed(tenant, ref, action=action, origin="poll")))
            else:
                result.duplicates += 1
        await publishers.publish(tenant, routed)
        newest = (_moment(notes[-1]), str(notes[-1]["id"])) if notes else None
        await polling.advance(conn, tenant, watched.patient_id, newest, len(routed))
    result.published = len(routed)
    return result
