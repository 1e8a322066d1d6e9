"""Transaction and batch Bundles.

A transaction runs in one database transaction: every entry succeeds or nothing is kept.
Entries run in the order the specification gives (DELETE, POST, PUT, GET); ``urn:uuid:``
fullUrls are replaced by the ids the server assigns (``urn:uuid:X/_history/N`` by
``Type/id/_history/N``, a versioned reference to an entry), ``ifNoneExist`` / ``ifMatch`` apply per
entry, and conditional references (``Practitioner?identifier=sys|val``) are resolved.
A batch runs each entry on its own and reports each entry's outcome. A GET entry is a read
(``Type/id``), a vread (``Type/id/_history/vid``) or a search (``Type?params``).
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from email.utils import format_datetime
from typing import Awaitable, Callable
from urllib.parse import parse_qsl

from services.ehr import families, interactions, search
from services.ehr.auth import Principal
from services.ehr.outcome import FhirError, bad_request
from services.ehr.storage import Store, Stored, Tx
from services.ehr.validation import check_id, check_type, validate
from services.ehr.values import etag_version

METHOD_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "GET": 3}
PERM = {"DELETE": "d", "POST": "c", "PUT": "u"}
REASONS = {200: "OK", 201: "Created", 204: "No Content"}
#: Bundle.entry.request elements that are strings when present (FHIR R4 Bundle).
REQUEST_STRINGS = ("method", "url", "ifNoneMatch", "ifModifiedSince", "ifMatch", "ifNoneExist")


@dataclass
class Entry:
    index: int
    method: str
    url: str
    rtype: str
    rid: str | None
    criteria: str | None
    resource: dict | None
    full_url: str | None
    if_none_exist: str | None
    if_match: int | None
    version: int | None = None     # GET Type/id/_history/vid: a vread



def _parse_entry(index: int, raw: object) -> Entry:
    where = f"Bundle.entry[{index}]"
    if not isinstance(raw, dict) or not isinstance(raw.get("request"), dict):
        raise bad_request(f"{where}: every entry needs a request")
    req = raw["request"]
    for name in REQUEST_STRINGS:
        if name in req and not isinstance(req[name], str):
            raise bad_request(f"{where}: request.{name} must be a string, not {_json_type(req[name])}")
    method, url = req.get("method"), req.get("url")
    if method not in METHOD_ORDER:
        raise FhirError(400 if method != "PATCH" else 405, f"{where}: request.method must be GET, POST, PUT or DELETE",
                        "not-supported")
    if not isinstance(url, str) or not url:
        raise bad_request(f"{where}: request.url is required")
    path, _, criteria = url.partition("?")
    parts = path.strip("/").split("/")
    rtype = check_type(parts[0])
    rid = check_id(parts[1]) if len(parts) > 1 and parts[1] else None
    version = None
    if len(parts) > 2:
        if method != "GET" or len(parts) != 4 or parts[2] != "_history" or not parts[3].isdigit():
            raise bad_request(f"{where}: request.url must be Type, Type/id or (GET) Type/id/_history/version")
        version = int(parts[3])
    resource = raw.get("resource")
    if method in ("POST", "PUT"):
        try:
            validate(resource, rtype)
        except FhirError as exc:
            exc.diagnostics = f"{where}: {exc.diagnostics}"
            raise
    if_none_exist = req.get("ifNoneExist")
    if if_none_exist is not None and method != "POST":
        raise bad_request(f"{where}: ifNoneExist belongs on a POST entry")
    full_url = raw.get("fullUrl")
    return Entry(index, method, url, rtype, rid, criteria or None, resource,
                 full_url if isinstance(full_url, str) else None, if_none_exist,
                 etag_version(req.get("ifMatch"), f"{where}: request.ifMatch"), version)


def _json_type(value: object) -> str:
    return {dict: "an object", list: "an array", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


def _walk_references(node) -> list[tuple[dict, str]]:
    """Collect (holder, reference) pairs of every Reference.reference in a resource."""
    found = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("reference")
            if isinstance(ref, str):
                found.append((item, ref))
            stack.extend(v for k, v in item.items() if isinstance(v, (dict, list)))
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _response(status: int, stored: Stored | None, with_resource: bool) -> dict:
    resp: dict = {"status": f"{status} {REASONS.get(status, '')}".strip()}
    if stored is not None:
        resp.update(location=f"{stored.type}/{stored.id}/_history/{stored.version}", etag=stored.etag,
                    lastModified=format_datetime(stored.last_updated, usegmt=True))
    entry = {"response": resp}
    if with_resource and stored is not None and not stored.deleted:
        entry["resource"] = stored.content
    return entry


async def _rewrite(tx: Tx, entry: Entry, ids: dict[str, str]) -> None:
    for holder, ref in _walk_references(entry.resource):
        base, versioned, version = ref.partition("/_history/")
        if ref in ids:
            holder["reference"] = ids[ref]
        elif versioned and base in ids and version.isdigit():  # a versioned reference to an entry
            holder["reference"] = f"{ids[base]}/_history/{version}"
        elif ref.startswith("urn:uuid:") or ref.startswith("urn:oid:"):
            raise bad_request(f"Bundle.entry[{entry.index}]: reference {ref[:80]} is not a fullUrl in this Bundle")
        elif "?" in ref and not ref.startswith("#") and "/" not in ref.partition("?")[0]:
            holder["reference"] = await interactions.resolve_conditional_reference(tx, ref)


async def _run_entry(tx: Tx, entry: Entry, base: str, read: Callable[..., Awaitable[dict]]) -> tuple[int, Stored | None, dict | None]:
    if entry.method == "POST":
        status, stored = await interactions.create(tx, entry.rtype, entry.resource, entry.if_none_exist,
                                                   rid=entry.rid)
        return status, stored, None
    if entry.method == "PUT":
        if entry.rid:
            status, stored = await interactions.update(tx, entry.rtype, entry.rid, entry.resource, entry.if_match)
        elif entry.criteria:
            status, stored = await interactions.conditional_update(tx, entry.rtype, entry.criteria, entry.resource,
                                                                   entry.if_match)
        else:
            raise bad_request(f"Bundle.entry[{entry.index}]: PUT needs Type/id or Type?criteria")
        return status, stored, None
    if entry.method == "DELETE":
        if not entry.rid:
            raise bad_request(f"Bundle.entry[{entry.index}]: conditional delete is not supported", "not-supported")
        await tx.delete(entry.rtype, entry.rid)
        return 204, None, None
    return 200, None, await read(tx, entry)


async def _assign_ids(tx: Tx, entries: list[Entry]) -> dict[str, str]:
    """fullUrl -> Type/id for every entry that creates or names a resource, before any write."""
    ids: dict[str, str] = {}
    for entry in entries:
        if entry.method == "POST":
            if entry.if_none_exist:
                await interactions.lock_conditional(tx, entry.rtype)
                found = await search.match(tx, entry.rtype, entry.if_none_exist.lstrip("?"))
                if len(found) == 1:
                    target = f"{entry.rtype}/{found[0].id}"
                    if entry.full_url:
                        ids[entry.full_url] = target
                    continue
            entry.rid = str(uuid.uuid4())
            if entry.resource is not None:
                entry.resource = {**entry.resource, "id": entry.rid}
        elif entry.method == "PUT" and entry.criteria and entry.full_url:
            await interactions.lock_conditional(tx, entry.rtype)
            found = await search.match(tx, entry.rtype, entry.criteria)
            if len(found) == 1:
                ids[entry.full_url] = f"{entry.rtype}/{found[0].id}"
            continue
        if entry.full_url and entry.rid:
            ids[entry.full_url] = f"{entry.rtype}/{entry.rid}"
    return ids


async def _read_entry(tx: Tx, entry: Entry) -> dict:
    if entry.rid and entry.version is not None:
        return (await tx.vread(entry.rtype, entry.rid, entry.version)).content
    if entry.rid:
        return (await tx.read(entry.rtype, entry.rid)).content
    q = search.parse(entry.rtype, parse_qsl(entry.criteria or ""))
    total, rows = await search.run(tx, q)
    return search.bundle("", q, total, rows)


def _allowed(entry: Entry, principal: Principal, family: str) -> None:
    """The client's scopes and the EHR family both allow this entry."""
    principal.require(entry.rtype, PERM.get(entry.method, "r" if entry.rid else "s"))
    if entry.method in PERM:
        try:
            families.check_write(family, entry.rtype)
        except FhirError as exc:
            exc.diagnostics = f"Bundle.entry[{entry.index}] ({entry.method} {entry.rtype}): {exc.diagnostics}"
            raise
    elif not entry.rid:
        families.check_search(family, entry.rtype, parse_qsl(entry.criteria or ""))


async def process(store: Store, tenant: str, bundle: object, principal: Principal, base: str,
                  *, drop_writes: bool = False, with_resources: bool = False,
                  family: str = families.DEFAULT) -> dict:
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise bad_request("POST to the base URL takes a Bundle of type transaction or batch")
    kind = bundle.get("type")
    if kind not in ("transaction", "batch"):
        raise bad_request(f"Bundle.type must be transaction or batch, not '{str(kind)[:32]}'")
    raw_entries = bundle.get("entry") or []
    if not isinstance(raw_entries, list):
        raise bad_request("Bundle.entry must be a list")
    if kind == "batch":
        return await _batch(store, tenant, raw_entries, principal, base, drop_writes, with_resources, family)
    entries = [_parse_entry(i, e) for i, e in enumerate(raw_entries)]
    for entry in entries:
        _allowed(entry, principal, family)
    urls = [e.full_url for e in entries if e.full_url]
    if len(urls) != len(set(urls)):
        raise bad_request("Bundle has duplicate fullUrls")
    results: dict[int, dict] = {}
    async with store.transaction(tenant, drop_writes=drop_writes) as tx:
        ordered = sorted(entries, key=lambda e: METHOD_ORDER[e.method])
        ids = await _assign_ids(tx, ordered)
        for entry in ordered:
            try:
                if entry.resource is not None:
                    await _rewrite(tx, entry, ids)
                status, stored, body = await _run_entry(tx, entry, base, _read_entry)
            except FhirError as exc:
                exc.diagnostics = f"Bundle.entry[{entry.index}] ({entry.method} {entry.rtype}): {exc.diagnostics}"
                raise
            results[entry.index] = {"resource": body, **_response(status, None, False)} if body is not None \
                else _response(status, stored, with_resources)
    return {"resourceType": "Bundle", "type": "transaction-response",
            "entry": [results[i] for i in range(len(entries))]}


async def _batch(store: Store, tenant: str, raw_entries: list, principal: Principal, base: str,
                 drop_writes: bool, with_resources: bool, family: str) -> dict:
    out = []
    for index, raw in enumerate(raw_entries):
        try:
            entry = _parse_entry(index, raw)
            _allowed(entry, principal, family)
            async with store.transaction(tenant, drop_writes=drop_writes) as tx:
                if entry.method == "POST":
                    entry.rid = None
                if entry.resource is not None:
                    await _rewrite(tx, entry, {})
                status, stored, body = await _run_entry(tx, entry, base, _read_entry)
            out.append({"resource": body, **_response(status, None, False)} if body is not None
                       else _response(status, stored, with_resources))
        except FhirError as exc:
            out.append({"response": {"status": str(exc.status), "outcome": exc.outcome()}})
    return {"resourceType": "Bundle", "type": "batch-response", "entry": out}
