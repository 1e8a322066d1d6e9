"""Ingest's view of a tenant's EHR, on the shared FHIR client (``services.core.fhir``).

Reads the receiver needs (vread, ``$events``, ``$status``, keyset pages by ``_lastUpdated``),
Subscription reactivation, and the HL7 writer: a Patient and the mapped resource written
with conditional operations keyed on their deterministic identifiers, so a resend never
makes a second copy.
"""
from __future__ import annotations

from typing import AsyncIterator
from urllib.parse import urljoin

from services.core.fhir import FhirClient
from services.ingest.hl7.mapping.common import MappedResource, Mapping

PAGE_SIZE = 100


class TenantEhr:
    def __init__(self, client: FhirClient):
        self.client = client

    async def read(self, rtype: str, rid: str) -> dict:
        return await self.client.read(rtype, rid)

    async def vread(self, rtype: str, rid: str, version: str) -> dict:
        return await self.client.vread(rtype, rid, version)

    async def events(self, subscription: str, low: int, high: int) -> dict:
        """``$events`` (Backport IG): the notification events low..high with their focus."""
        return await self.client._json("GET", f"Subscription/{subscription}/$events",
                                       params={"eventsSinceNumber": str(low), "eventsUntilNumber": str(high),
                                               "content": "id-only"})

    async def status(self, subscription: str) -> dict:
        """``$status`` as a notification-shaped Bundle (history, SubscriptionStatus first).

        The IG answers with a searchset of SubscriptionStatus; the first match is this one."""
        bundle = await self.client._json("GET", f"Subscription/{subscription}/$status")
        if bundle.get("type") == "searchset":
            entries = [e for e in bundle.get("entry", []) if isinstance(e, dict) and e.get("resource")]
            return {"resourceType": "Bundle", "type": "history", "entry": entries[:1]}
        return bundle

    async def page_after(self, rtype: str, since: str | None, after: tuple[str, str] | None,
                         count: int = PAGE_SIZE, extra: dict | None = None) -> list[dict]:
        """One keyset page: resources with (lastUpdated, id) > ``after``, oldest first.

        Each page is a fresh search from the cursor (no offsets), so resources updated while
        paging are not skipped: they move to the end and are seen again with their new version."""
        params = {"_sort": "_lastUpdated", "_count": str(count), **(extra or {})}
        low = after[0] if after else since
        if low:
            params["_lastUpdated"] = f"ge{low}"
        bundle = await self.client.search_page(rtype, params)
        out = []
        for entry in bundle.get("entry", []):
            resource = entry.get("resource")
            if not isinstance(resource, dict) or entry.get("search", {}).get("mode", "match") != "match":
                continue
            key = ((resource.get("meta") or {}).get("lastUpdated", ""), resource.get("id", ""))
            if after is None or _later(key, after):
                out.append(resource)
        return out

    @staticmethod
    def next_url(bundle: dict) -> str | None:
        """Where a searchset's ``next`` link points, or None on the last page."""
        return next((link.get("url") for link in bundle.get("link") or [] if isinstance(link, dict)
                     and link.get("relation") == "next" and link.get("url")), None)

    async def page_at(self, url: str) -> dict:
        """A search page by its (absolute or relative) link."""
        return await self.client._json("GET", urljoin(self.client.base_url + "/", url))

    async def updated_since(self, rtype: str, since: str | None, count: int = PAGE_SIZE,
                            max_pages: int = 1000, extra: dict | None = None) -> AsyncIterator[dict]:
        """Every resource changed at or after ``since`` (and matching ``extra`` search parameters)."""
        after = None
        for _ in range(max_pages):
            page = await self.page_after(rtype, since, after, count, extra)
            if not page:
                return
            for resource in page:
                yield resource
            last = page[-1]
            after = ((last.get("meta") or {}).get("lastUpdated", ""), last.get("id", ""))

    async def reactivate(self, subscription: str) -> dict:
        """Ask the EHR to handshake an errored Subscription again (status -> requested)."""
        resource = await self.client.read("Subscription", subscription)
        resource["status"] = "requested"
        result = await self.client.update(resource)
        return result.resource or resource

    async def write(self, tenant: str, mapping: Mapping) -> list[tuple[dict, str]]:
        """Write the Patient, then the resources pointing at it; returns (resource, action) for each."""
        patient, patient_action = await self._write_one(mapping.patient)
        out = [(patient, patient_action)]
        reference = f"Patient/{patient['id']}"
        for mapped in mapping.resources:
            body = _point_at(mapped.body, mapping.patient.full_url, reference)
            resource, action = await self._write_one(MappedResource(mapped.resource_type, mapped.system,
                                                                    mapped.value, body, mapped.mode, mapped.full_url))
            out.append((resource, action))
        return out

    async def _write_one(self, mapped: MappedResource) -> tuple[dict, str]:
        if mapped.mode == "create":
            result = await self.client.create(mapped.body, if_none_exist=mapped.search)
        else:
            response = await self.client.request("PUT", mapped.resource_type,
                                                  params={"identifier": f"{mapped.system}|{mapped.value}"},
                                                  json_body=mapped.body, headers={"Prefer": "return=representation"})
            result = self.client._write_result(response)
        resource = result.resource
        if not resource or not resource.get("id"):
            resource = await self.client.vread(mapped.resource_type, result.id, result.version)
        version = str((resource.get("meta") or {}).get("versionId", ""))
        return resource, ("create" if version == "1" else "update")


def _later(key: tuple[str, str], after: tuple[str, str]) -> bool:
    from datetime import datetime

    def moment(text: str):
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
    a, b = moment(key[0]), moment(after[0])
    if a is None or b is None:
        return key > after
    return (a, key[1]) > (b, after[1])


def _point_at(node, placeholder: str, reference: str):
    if isinstance(node, dict):
        return {k: (reference if k == "reference" and v == placeholder else _point_at(v, placeholder, reference))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_point_at(v, placeholder, reference) for v in node]
    return node
