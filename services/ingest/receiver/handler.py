"""What a notification does: record liveness, recover gaps, resolve each event, publish once.

Per event, inside one tenant transaction: claim (subscription, eventNumber); resolve the
resource version (from the bundle for full-resource, by vread of the exact version for
id-only, after ``$events`` for empty); claim (resource, versionId); publish; commit. A
failure anywhere rolls the claims back and the request fails with 503, so the EHR
retries and nothing is half-recorded.

Gaps (an event number beyond last+1) are recovered before the new events: ``$events``
for the missing range, else a search by ``_lastUpdated`` from the subscription's
checkpoint over the topic's resource types.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from services.core.errors import FatalError, NotFoundError, RetryableError, VigilError
from services.core.logging import get_logger
from services.ingest import events as ev
from services.ingest.receiver.notification import (BadNotification, Focus, Notification, NotificationEvent,
                                                   parse_notification)
from services.ingest.receiver.topics import resource_types
from services.ingest.store import ledger, subscriptions as substore

log = get_logger("ingest.receiver")
RECOVERY_PAGE_SIZE = 100
MAX_RECOVERY_PAGES = 200  # 200 pages x 100 = 20,000 resources per fallback search, then resume next time


@dataclass
class Result:
    type: str
    published: int = 0
    duplicates: int = 0
    recovered: int = 0
    ignored: int = 0
    details: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"type": self.type, "published": self.published, "duplicates": self.duplicates,
                "recovered": self.recovered, "ignored": self.ignored}


class NotificationHandler:
    def __init__(self, pools, publishers, ehr_for):
        self.pools, self.publishers, self.ehr_for = pools, publishers, ehr_for
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    def _lock(self, tenant: str, subscription: str) -> asyncio.Lock:
        return self._locks.setdefault((tenant, subscription), asyncio.Lock())

    async def handle(self, tenant: str, note: Notification) -> Result:
        result = Result(note.type)
        sub = note.subscription_id
        async with self._lock(tenant, sub):
            async with self.pools.tx(tenant) as conn:
                state = await substore.load(conn, tenant, sub)
                await substore.touch(conn, tenant, sub, kind=note.type, status=note.status, topic=note.topic)
            if note.type == "handshake":
                return result
            if note.type in ("heartbeat", "query-status"):
                if note.events_since_start is not None and note.events_since_start > state.last_event_number:
                    await self._recover(tenant, note.topic or state.topic, sub, state.last_event_number + 1,
                                        note.events_since_start, result)
                return result
            events = list(note.events)
            if events and events[0].number > state.last_event_number + 1:
                await self._recover(tenant, note.topic or state.topic, sub, state.last_event_number + 1,
                                    events[0].number - 1, result)
            if any(e.focus is None for e in events):
                events = await self._complete_empty(tenant, sub, events)
            for event in events:
                await self._process(tenant, sub, event, note, result)
        log.info("notify.handled", tenant=tenant, subscription=sub, **result.as_dict())
        return result

    async def _complete_empty(self, tenant: str, sub: str, events: list[NotificationEvent]) -> list[NotificationEvent]:
        """Empty notifications carry numbers only: ask the EHR which resources they were."""
        low, high = events[0].number, events[-1].number
        found = await self._events_from_ehr(tenant, sub, low, high)
        by_number = {e.number: e for e in found}
        missing = [e.number for e in events if e.number not in by_number or by_number[e.number].focus is None]
        if missing:
            raise RetryableError(f"$events did not return the focus of events {missing[:5]}", code="events_incomplete")
        return [by_number[e.number] for e in events]

    async def _events_from_ehr(self, tenant: str, sub: str, low: int, high: int) -> list[NotificationEvent]:
        bundle = await (await self.ehr_for(tenant)).events(sub, low, high)
        try:
            return list(parse_notification(bundle).events)
        except BadNotification as exc:
            raise FatalError(f"$events returned a malformed bundle ({exc.path})", code="events_malformed") from None

    async def _recover(self, tenant: str, topic: str, sub: str, low: int, high: int, result: Result) -> None:
        if high < low:
            return
        log.info("notify.gap", tenant=tenant, subscription=sub, low=low, high=high)
        try:
            recovered = await self._events_from_ehr(tenant, sub, low, high)
            numbers = {e.number for e in recovered}
            if any(n not in numbers for n in range(low, high + 1)) or any(e.focus is None for e in recovered):
                raise FatalError("$events did not return the whole range", code="events_incomplete")
        except (VigilError, OSError) as exc:
            log.warning("notify.events_unavailable", tenant=tenant, subscription=sub,
                        error_code=getattr(exc, "code", type(exc).__name__))
            await self._search_fallback(tenant, topic, sub, high, result)
            return
        before = result.published
        for event in sorted(recovered, key=lambda e: e.number):
            await self._process(tenant, sub, event, None, result)
        result.recovered += result.published - before

    async def _search_fallback(self, tenant: str, topic: str, sub: str, high: int, result: Result) -> None:
        async with self.pools.tx(tenant) as conn:
            checkpoint = (await substore.load(conn, tenant, sub)).checkpoint
        ehr = await self.ehr_for(tenant)
        since = checkpoint.isoformat() if checkpoint else None
        for rtype in resource_types(topic):
            async for resource in ehr.updated_since(rtype, since, RECOVERY_PAGE_SIZE, MAX_RECOVERY_PAGES):
                if await self._publish_version(tenant, resource, "subscription", sub, None, result):
                    result.recovered += 1
        async with self.pools.tx(tenant) as conn:
            await substore.advance(conn, tenant, sub, high, None)

    async def _resolve(self, tenant: str, focus: Focus, note: Notification | None) -> dict | None:
        resource = note.resource_for(focus) if note is not None else None
        if resource is not None and (resource.get("meta") or {}).get("versionId") and resource.get("id"):
            return resource
        ehr = await self.ehr_for(tenant)
        try:
            if focus.version:
                return await ehr.vread(focus.resource_type, focus.id, focus.version)
            return await ehr.read(focus.resource_type, focus.id)
        except NotFoundError:
            return None
        except FatalError as exc:
            if exc.code == "http_410":  # the version is a deletion
                return {"resourceType": focus.resource_type, "id": focus.id,
                        "meta": {"versionId": focus.version or "0"}, "_deleted": True}
            raise

    async def _process(self, tenant: str, sub: str, event: NotificationEvent, note: Notification | None,
                       result: Result) -> None:
        async with self.pools.tx(tenant) as conn:
            if not await ledger.claim_event_number(conn, tenant, sub, event.number):
                result.duplicates += 1
                await substore.advance(conn, tenant, sub, event.number, None)
                return
            resource = await self._resolve(tenant, event.focus, note) if event.focus else None
            if resource is None:
                result.ignored += 1
                log.warning("notify.focus_missing", tenant=tenant, subscription=sub, event_number=event.number)
                await substore.advance(conn, tenant, sub, event.number, None)
                return
            published = await self._publish_in(conn, tenant, resource, sub, event.number, result)
            await substore.advance(conn, tenant, sub, event.number,
                                   (resource.get("meta") or {}).get("lastUpdated") if published else None)

    async def publish_resource(self, conn, tenant: str, resource: dict, result: Result) -> bool:
        """Claim (resource, versionId) and publish it in the caller's transaction (R4 notifications and
        catch-up searches, which carry no subscription event numbers)."""
        return await self._publish_in(conn, tenant, resource, None, None, result)

    async def _publish_version(self, tenant: str, resource: dict, origin: str, sub: str | None,
                               number: int | None, result: Result) -> bool:
        async with self.pools.tx(tenant) as conn:
            return await self._publish_in(conn, tenant, resource, sub, number, result, origin=origin)

    async def _publish_in(self, conn, tenant: str, resource: dict, sub: str | None, number: int | None,
                          result: Result, origin: str = "subscription") -> bool:
        rtype = resource.get("resourceType")
        if rtype not in ev.PUBLISHED_TYPES:
            result.ignored += 1
            return False
        deleted = bool(resource.pop("_deleted", False))
        try:
            ref = ev.ref_of(resource)
        except ValueError:
            result.ignored += 1
            return False
        if not await ledger.claim_version(conn, tenant, ref.resource_type, ref.id, ref.version_id, origin):
            result.duplicates += 1
            return False
        action = "delete" if deleted else ("create" if ref.version_id == "1" else "update")
        if rtype == "Task":
            if deleted:
                result.ignored += 1
                return False
            try:
                event = ev.task_updated(tenant, resource)
            except ValueError:
                result.ignored += 1
                return False
        else:
            event = ev.resource_changed(tenant, ref, action=action, origin=origin, subscription=sub,
                                        event_number=number)
        await self.publishers.publish(tenant, [(ev.routes(rtype), event)])
        result.published += 1
        return True
