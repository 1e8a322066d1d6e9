"""The write interactions shared by the REST routes and Bundle entries (always inside a Tx)."""
from __future__ import annotations

from urllib.parse import parse_qsl

from services.ehr import search
from services.ehr.outcome import bad_request, precondition_failed
from services.ehr.storage import Stored, Tx

PLACEHOLDER_TAG = {"system": "https://vigil.health/fhir/ehr-sandbox", "code": "placeholder",
                   "display": "Created to resolve a conditional reference"}


async def lock_conditional(tx: Tx, rtype: str) -> None:
    """Conditional operations on one type in one tenant are serialized: a check-then-create
    cannot interleave with another, so N parallel identical conditional creates make one resource."""
    await tx.lock("conditional", rtype)


async def create(tx: Tx, rtype: str, resource: dict, if_none_exist: str | None = None,
                 rid: str | None = None) -> tuple[int, Stored]:
    """201 with the new resource, or 200 with the one existing match of If-None-Exist."""
    if if_none_exist:
        await lock_conditional(tx, rtype)
        found = await search.match(tx, rtype, if_none_exist.lstrip("?"))
        if len(found) > 1:
            raise precondition_failed(f"If-None-Exist matched more than one {rtype}")
        if found:
            return 200, found[0]
    return 201, await tx.create(rtype, resource, rid)


async def update(tx: Tx, rtype: str, rid: str, resource: dict, if_match: int | None) -> tuple[int, Stored]:
    if resource.get("id") not in (None, rid):
        raise bad_request(f"Resource id '{str(resource.get('id'))[:64]}' does not match the URL id '{rid}'")
    stored, created = await tx.update(rtype, rid, resource, if_match)
    return (201 if created else 200), stored


async def conditional_update(tx: Tx, rtype: str, criteria: str, resource: dict,
                             if_match: int | None) -> tuple[int, Stored]:
    await lock_conditional(tx, rtype)
    found = await search.match(tx, rtype, criteria)
    if len(found) > 1:
        raise precondition_failed(f"Conditional update matched more than one {rtype}")
    if not found:
        if resource.get("id"):
            raise bad_request("Conditional update that matches nothing must not carry an id")
        return 201, await tx.create(rtype, resource)
    return await update(tx, rtype, found[0].id, {**resource, "id": found[0].id}, if_match)


async def resolve_conditional_reference(tx: Tx, reference: str) -> str:
    """``Practitioner?identifier=sys|val`` -> ``Practitioner/<id>``. No match with identifier-only
    criteria creates a placeholder carrying that identifier (as HAPI FHIR does with auto-created
    placeholder reference targets); several matches are a 412."""
    from services.ehr.validation import check_type, validate

    rtype, _, criteria = reference.partition("?")
    check_type(rtype)
    await lock_conditional(tx, rtype)
    found = await search.match(tx, rtype, criteria)
    if len(found) > 1:
        raise precondition_failed(f"Conditional reference {rtype}?... matched more than one resource")
    if found:
        return f"{rtype}/{found[0].id}"
    pairs = parse_qsl(criteria, keep_blank_values=True)
    if len(pairs) == 1 and pairs[0][0] == "identifier" and "|" in pairs[0][1]:
        system, _, value = pairs[0][1].partition("|")
        placeholder = {"resourceType": rtype, "identifier": [{"system": system, "value": value}],
                       "meta": {"tag": [PLACEHOLDER_TAG]}}
        try:
            validate(placeholder, rtype)
        except Exception:
            raise precondition_failed(f"Conditional reference {rtype}?... matched no resource") from None
        stored = await tx.create(rtype, placeholder)
        return f"{rtype}/{stored.id}"
    raise precondition_failed(f"Conditional reference {rtype}?... matched no resource")
