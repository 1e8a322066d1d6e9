"""Backfill: publish the DocumentReferences changed since a date, resumably, exactly once.

Pages are keyset pages by (lastUpdated, id) from the job's cursor (PostgreSQL, per tenant
and job). Each page runs in one tenant transaction: claim every (resource, versionId) in
the shared ledger (so a version the real-time path already published is skipped), publish
the claimed ones, move the cursor, commit. A crash loses at most the page in flight, which
is redone from the committed cursor with no duplicates.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from services.ingest import events as ev
from services.ingest.ehr import PAGE_SIZE, TenantEhr
from services.ingest.store import ledger

RESOURCE_TYPE = "DocumentReference"


@dataclass
class BackfillReport:
    job: str
    seen: int
    published: int
    skipped: int
    resumed: bool


def job_name(since: datetime, resource_type: str = RESOURCE_TYPE) -> str:
    return f"{resource_type}:{since.isoformat()}"


async def count(ehr: TenantEhr, since: datetime, resource_type: str = RESOURCE_TYPE) -> int | None:
    bundle = await ehr.client.search_page(resource_type, {"_lastUpdated": f"ge{since.isoformat()}",
                                                          "_summary": "count"})
    total = bundle.get("total")
    return total if isinstance(total, int) else None


async def run(tenant: str, since: datetime, ehr: TenantEhr, pools, publishers, *,
              page_size: int = PAGE_SIZE, resource_type: str = RESOURCE_TYPE,
              on_page: Callable[[int, int], None] | None = None, max_pages: int | None = None) -> BackfillReport:
    job = job_name(since, resource_type)
    async with pools.tx(tenant) as conn:
        await conn.execute("INSERT INTO ingest_backfill (tenant, job, since) VALUES ($1, $2, $3) "
                           "ON CONFLICT DO NOTHING", tenant, job, since)
        row = await conn.fetchrow("SELECT cursor_updated, cursor_id, seen, published, done FROM ingest_backfill "
                                  "WHERE tenant = $1 AND job = $2", tenant, job)
    resumed = row["cursor_updated"] is not None
    after = (row["cursor_updated"].isoformat(), row["cursor_id"]) if resumed else None
    seen, published, pages = row["seen"], row["published"], 0
    while max_pages is None or pages < max_pages:
        page = await ehr.page_after(resource_type, since.isoformat(), after, page_size)
        if not page:
            async with pools.tx(tenant) as conn:
                await conn.execute("UPDATE ingest_backfill SET done = true, updated_at = now() "
                                   "WHERE tenant = $1 AND job = $2", tenant, job)
            break
        pages += 1
        async with pools.tx(tenant) as conn:
            routed = []
            for resource in page:
                ref = ev.ref_of(resource)
                if await ledger.claim_version(conn, tenant, ref.resource_type, ref.id, ref.version_id, "backfill"):
                    action = "create" if ref.version_id == "1" else "update"
                    routed.append((ev.EHR_EVENTS, ev.resource_changed(tenant, ref, action=action, origin="backfill")))
            await publishers.publish(tenant, routed)
            last = page[-1]
            after = ((last.get("meta") or {}).get("lastUpdated"), last["id"])
            seen, published = seen + len(page), published + len(routed)
            await conn.execute(
                "UPDATE ingest_backfill SET cursor_updated = $3::timestamptz, cursor_id = $4, seen = $5, "
                "published = $6, updated_at = now() WHERE tenant = $1 AND job = $2",
                tenant, job, datetime.fromisoformat(after[0].replace("Z", "+00:00")), after[1], seen, published)
        if on_page:
            on_page(len(page), len(routed))
    return BackfillReport(job, seen, published, seen - published, resumed)
