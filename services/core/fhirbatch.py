"""FHIR ``batch`` Bundles of reads and searches: several independent GETs in one round trip.

``batch`` is a standard FHIR R4 system interaction (http://hl7.org/fhir/R4/http.html#transaction);
an EHR that offers it declares ``rest.interaction.code = batch`` in its CapabilityStatement. Each
entry succeeds or fails on its own, so a caller checks every entry and, when one is not a plain
200 answer (or a searchset with more pages), falls back to the single requests.
"""
from __future__ import annotations

from services.core.fhir import FhirClient


def supports_batch(capabilities: dict | None) -> bool:
    """Does the CapabilityStatement declare the system-level ``batch`` interaction?"""
    for rest in (capabilities or {}).get("rest", []):
        if any(i.get("code") == "batch" for i in rest.get("interaction", [])):
            return True
    return False


def entry_resource(entry: dict) -> dict | None:
    """The resource of one batch read entry; None when it did not answer 200 with a resource."""
    status = str((entry.get("response") or {}).get("status", ""))
    resource = entry.get("resource")
    return resource if status.startswith("200") and isinstance(resource, dict) else None


def searchset(entry: dict) -> list[dict] | None:
    """The matches of one batch search entry; None when it failed or has more pages (search again)."""
    bundle = entry_resource(entry) or {}
    if bundle.get("resourceType") != "Bundle" or any(
            link.get("relation") == "next" for link in bundle.get("link", [])):
        return None
    return [e["resource"] for e in bundle.get("entry", [])
            if (e.get("search") or {}).get("mode", "match") == "match" and "resource" in e]


async def batch_get(client: FhirClient, urls: list[str]) -> list[dict] | None:
    """One ``batch`` Bundle of GETs (relative URLs, e.g. ``Patient/1`` or ``Task?identifier=...``);
    its response entries in request order, or None when the answer does not have one per request."""
    response = await client.transaction({"resourceType": "Bundle", "type": "batch",
                                         "entry": [{"request": {"method": "GET", "url": url}} for url in urls]})
    entries = response.get("entry") or []
    return entries if len(entries) == len(urls) else None
