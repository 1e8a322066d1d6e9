"""Classic R4 criteria-based rest-hook notifications (HAPI FHIR, Smile CDR, Medplum).

The EHR POSTs to ``/notify/<tenant>/r4/<Type>`` (the endpoint ``vigil subscribe`` gives each
criteria Subscription) with the Subscription's ``channel.header`` (the tenant's bearer token) and
either the version that matched (``channel.payload`` set) or an empty body. There is no bundle, no
event number and no handshake, so:

- a resource is deduplicated by (type, id, versionId) in the ingest ledger, and a version older
  than one already claimed (an out-of-order delivery) changes nothing;
- an empty body means "something of this type changed": a ``_lastUpdated`` search from the
  type's checkpoint finds what, where the profile allows that search. A search sees current
  versions only, so versions superseded before it ran are not published (the latest one is);
- a lost notification is found by the same search, run by the watchdog every round
  (:meth:`R4Notifications.catch_up`).

The checkpoint (``ingest_subscriptions`` row ``r4:<Type>``) advances only through catch-up
searches, never through a notification, since a notification for a later change says nothing about
an earlier one that was lost. It stays ``CATCH_UP_OVERLAP_S`` behind the search's start, so a write
committed late with an earlier lastUpdated is still found; what is found twice is a duplicate.
"""
from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone

from services.core.integration import IntegrationProfile
from services.core.logging import get_logger
from services.ingest import events as ev
from services.ingest.receiver.handler import NotificationHandler, Result
from services.ingest.receiver.notification import REFERENCE, BadNotification
from services.ingest.store import ledger, subscriptions as substore
from services.ingest.subscribe import R4_CRITERIA

log = get_logger("ingest.receiver.r4")
TRIGGER = "r4-criteria"
STATE_PREFIX = "r4:"
#: The resource types with an R4 endpoint (what ``vigil subscribe`` subscribes to), and their search criteria.
CRITERIA = {item.resource_type: item for item in R4_CRITERIA}
TYPES = tuple(CRITERIA)
#: Families whose EHR refuses a DocumentReference search without a patient (Epic, Oracle Health).
PATIENT_SCOPED_FAMILIES = ("epic-like", "oracle-like")
#: The checkpoint stays this far behind the start of the search that moved it (see the module docstring).
CATCH_UP_OVERLAP_S = 5.0
CATCH_UP_PAGE_SIZE = 100
MAX_CATCH_UP_PAGES = 200  # 20,000 versions per type per round; the rest is found next round


def state_key(resource_type: str) -> str:
    return STATE_PREFIX + resource_type


def search_allowed(profile: IntegrationProfile) -> bool:
    """May Vigil search the tenant's EHR by ``_lastUpdated`` without a patient?"""
    return profile.family not in PATIENT_SCOPED_FAMILIES


def parse_resource(body: bytes, resource_type: str) -> dict | None:
    """The notified version, or None for an empty notification; BadNotification (a 400) otherwise."""
    if not body.strip():
        return None
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise BadNotification("not valid JSON", "body") from None
    if not isinstance(data, dict):
        raise BadNotification("must be a FHIR resource (a JSON object) or empty", "body")
    if data.get("resourceType") != resource_type:
        raise BadNotification(f"must be a {resource_type} (the type this endpoint receives)", "resourceType")
    meta = data.get("meta")
    version = meta.get("versionId") if isinstance(meta, dict) else None
    rid = data.get("id")
    if not isinstance(rid, str) or not REFERENCE.match(f"{resource_type}/{rid}"):
        raise BadNotification("must be a resource id", "id")
    if not isinstance(version, str) or not REFERENCE.match(f"{resource_type}/{rid}/_history/{version}"):
        raise BadNotification("must be the version id of the notified version", "meta.versionId")
    last_updated = meta.get("lastUpdated")
    if last_updated is not None and not isinstance(last_updated, str):
        raise BadNotification("must be an instant", "meta.lastUpdated")
    return data


def _instant(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


class R4Notifications:
    """Shares the notification handler's pools, publishers, EHR clients and publishing path."""

    def __init__(self, handler: NotificationHandler):
        self.handler = handler
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def receive(self, tenant: str, resource_type: str, resource: dict | None,
                      profile: IntegrationProfile) -> Result:
        result = Result("r4-full-resource" if resource is not None else "r4-empty")
        async with self.handler.pools.tx(tenant) as conn:
            await substore.load(conn, tenant, state_key(resource_type))
            await substore.touch(conn, tenant, state_key(resource_type), kind="event-notification",
                                 status="active", topic=resource_type)
        if resource is not None:
            await self._publish(tenant, resource, result)
        elif search_allowed(profile):
            await self.catch_up(tenant, resource_type, profile, result)
        else:  # an empty notification with no way to find what changed: said, not hidden
            result.ignored += 1
            log.warning("r4.empty_without_search", tenant=tenant, resource_type=resource_type)
        log.info("r4.handled", tenant=tenant, resource_type=resource_type, **result.as_dict())
        return result

    async def _publish(self, tenant: str, resource: dict, result: Result) -> bool:
        ref = ev.ref_of(resource)
        async with self.handler.pools.tx(tenant) as conn:
            # One resource's versions are judged one at a time, so "is a later one claimed?" is exact.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))",
                               f"{tenant}/{ref.resource_type}/{ref.id}")
            if await ledger.newer_version_seen(conn, tenant, ref.resource_type, ref.id, ref.version_id):
                result.ignored += 1  # out of order: a later version was already published
                return False
            return await self.handler.publish_resource(conn, tenant, resource, result)

    async def catch_up(self, tenant: str, resource_type: str, profile: IntegrationProfile,
                       result: Result | None = None) -> Result:
        """Search what changed since the type's checkpoint; publish what was missed; move the checkpoint."""
        result = result or Result("r4-catch-up")
        if not search_allowed(profile):
            return result
        lock = self._locks.setdefault((tenant, resource_type), asyncio.Lock())
        async with lock:
            key = state_key(resource_type)
            async with self.handler.pools.tx(tenant) as conn:
                checkpoint = (await substore.load(conn, tenant, key)).checkpoint
            started = datetime.now(timezone.utc)
            ehr = await self.handler.ehr_for(tenant)
            item = CRITERIA.get(resource_type)
            extra = dict(p.split("=", 1) for p in item.query.split("&")) if item and item.query else None
            newest = None
            async for resource in ehr.updated_since(resource_type, checkpoint.isoformat() if checkpoint else None,
                                                    CATCH_UP_PAGE_SIZE, MAX_CATCH_UP_PAGES, extra):
                if await self._publish(tenant, resource, result):
                    result.recovered += 1
                moment = _instant((resource.get("meta") or {}).get("lastUpdated"))
                if moment is not None and (newest is None or moment > newest):
                    newest = moment
            if newest is not None:
                mark = min(newest, started - timedelta(seconds=CATCH_UP_OVERLAP_S))
                async with self.handler.pools.tx(tenant) as conn:
                    await substore.advance(conn, tenant, key, None, mark.isoformat())
        if result.recovered:
            log.info("r4.recovered", tenant=tenant, resource_type=resource_type, recovered=result.recovered)
        return result

    async def catch_up_tenant(self, tenant: str, profile: IntegrationProfile) -> list[dict]:
        """The watchdog's round for a tenant with the r4-criteria trigger: every type, one report each."""
        reports = []
        for resource_type in TYPES:
            result = await self.catch_up(tenant, resource_type, profile)
            reports.append({"subscription": state_key(resource_type), "status": "active", "reactivated": False,
                            "recovered": result.recovered})
        return reports
