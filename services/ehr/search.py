"""Search: the table of supported parameters, parsing, SQL, paging, searchset Bundles.

Token and reference parameters become SQL/JSON path predicates (``content @? path``),
served by the GIN index on the content; dates compare ``ehr_ts(...)`` timestamps.
Unknown parameters and modifiers are refused with 400, like a strict server.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from urllib.parse import urlencode

from services.ehr.config import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from services.ehr.outcome import bad_request
from services.ehr.storage import Stored, Tx
from services.ehr.values import date_range, whole_number


@dataclass(frozen=True)
class Param:
    kind: str  # id | lastupdated | code | concept | identifier | reference | date
    paths: tuple[str, ...] = ()
    target: str | None = None  # default type of an untyped reference value


def _p(kind: str, *paths: str, target: str | None = None) -> Param:
    return Param(kind, paths, target)


COMMON: dict[str, Param] = {"_id": _p("id"), "_lastUpdated": _p("lastupdated"),
                            "identifier": _p("identifier", "identifier")}

_PATIENT_PATH = {"Observation": "subject", "Condition": "subject", "DocumentReference": "subject",
                 "DiagnosticReport": "subject", "Encounter": "subject", "MedicationRequest": "subject",
                 "MedicationAdministration": "subject", "Procedure": "subject", "CarePlan": "subject",
                 "CareTeam": "subject", "Communication": "subject", "Task": "for", "DetectedIssue": "patient",
                 "Appointment": "participant.actor", "Claim": "patient", "ExplanationOfBenefit": "patient",
                 "AllergyIntolerance": "patient", "Immunization": "patient"}
#: The Patient compartment as this server knows it: type -> path of its patient reference ($export).
PATIENT_PATHS = _PATIENT_PATH
_STATUS_TYPES = ("Task", "Appointment", "Slot", "Observation", "DocumentReference", "MedicationRequest", "Encounter",
                 "CareTeam", "Communication", "Subscription", "DiagnosticReport", "Procedure", "CarePlan", "Claim",
                 "ExplanationOfBenefit", "MedicationAdministration", "Device", "DetectedIssue")
_CODE_PATH = {"Observation": "code", "Condition": "code", "Task": "code", "Procedure": "code",
              "DiagnosticReport": "code", "MedicationRequest": "medicationCodeableConcept",
              "MedicationAdministration": "medicationCodeableConcept", "DetectedIssue": "code"}
_DATE_PATHS = {"Observation": ("effectiveDateTime", "effectivePeriod.start", "effectiveInstant"),
               "Encounter": ("period.start",), "DocumentReference": ("date",), "Appointment": ("start",),
               "DiagnosticReport": ("effectiveDateTime", "effectivePeriod.start"),
               "Procedure": ("performedDateTime", "performedPeriod.start"), "CarePlan": ("period.start",),
               "Communication": ("sent",), "DetectedIssue": ("identifiedDateTime",), "AuditEvent": ("recorded",),
               "Provenance": ("recorded",)}

TYPE_PARAMS: dict[str, dict[str, Param]] = {}


def _add(rtype: str, name: str, param: Param) -> None:
    TYPE_PARAMS.setdefault(rtype, {})[name] = param


for _t, _path in _PATIENT_PATH.items():
    _add(_t, "patient", _p("reference", _path, target="Patient"))
    if _path in ("subject", "for"):
        _add(_t, "subject", _p("reference", _path))
for _t in _STATUS_TYPES:
    _add(_t, "status", _p("code", "status"))
for _t, _path in _CODE_PATH.items():
    _add(_t, "code", _p("concept", _path))
for _t, _paths in _DATE_PATHS.items():
    _add(_t, "date", _p("date", *_paths))
for _t in ("Observation", "Condition", "DocumentReference", "CareTeam"):
    _add(_t, "category", _p("concept", "category"))
for _t in ("Observation", "Condition", "DiagnosticReport", "Procedure"):
    _add(_t, "encounter", _p("reference", "encounter", target="Encounter"))
_add("DocumentReference", "encounter", _p("reference", "context.encounter", target="Encounter"))
_add("DocumentReference", "type", _p("concept", "type"))
_add("Encounter", "type", _p("concept", "type"))
_add("Task", "owner", _p("reference", "owner"))
_add("Task", "focus", _p("reference", "focus"))
_add("Task", "requester", _p("reference", "requester"))
_add("Task", "intent", _p("code", "intent"))
_add("Task", "priority", _p("code", "priority"))
_add("Task", "business-status", _p("concept", "businessStatus"))
_add("Task", "authored-on", _p("date", "authoredOn"))
_add("Task", "modified", _p("date", "lastModified"))
_add("MedicationRequest", "authoredon", _p("date", "authoredOn"))
_add("MedicationRequest", "intent", _p("code", "intent"))
_add("Schedule", "actor", _p("reference", "actor"))
_add("Appointment", "actor", _p("reference", "participant.actor"))
_add("Appointment", "practitioner", _p("reference", "participant.actor", target="Practitioner"))
_add("Appointment", "slot", _p("reference", "slot", target="Slot"))
_add("CareTeam", "participant", _p("reference", "participant.member"))
_add("Slot", "schedule", _p("reference", "schedule", target="Schedule"))
_add("Slot", "start", _p("date", "start"))
_add("Provenance", "target", _p("reference", "target"))
_add("Practitioner", "active", _p("code", "active"))

#: Result parameters accepted everywhere (others starting with "_" are refused).
RESULT_PARAMS = ("_count", "_offset", "_sort", "_summary", "_total", "_format", "_pretty")
SORTS = {"_lastUpdated": "last_updated ASC, id ASC", "-_lastUpdated": "last_updated DESC, id DESC"}
#: The largest _offset honoured (larger ones are clamped to it).
MAX_OFFSET = 10**9


def params_for(rtype: str) -> dict[str, Param]:
    return {**COMMON, **TYPE_PARAMS.get(rtype, {})}


@dataclass
class Query:
    rtype: str
    where: list[str] = field(default_factory=list)
    args: list = field(default_factory=list)
    count: int = DEFAULT_PAGE_SIZE
    offset: int = 0
    sort: str = SORTS["_lastUpdated"]
    summary_count: bool = False
    criteria: list[tuple[str, str]] = field(default_factory=list)

    def arg(self, value) -> str:
        self.args.append(value)
        return f"${len(self.args) + 2}"  # $1 tenant, $2 type


def _jp_string(value: str) -> str:
    return json.dumps(value)


def _token_path(param: Param, path: str, value: str) -> str:
    system, bar, code = value.partition("|")
    if not bar:
        system, code = None, value
    base = "$." + path
    if param.kind == "code":
        if code in ("true", "false") and param.paths == ("active",):
            return f"{base} ? (@ == {code})"
        return f"{base} ? (@ == {_jp_string(code)})"
    member = "value" if param.kind == "identifier" else "code"
    if param.kind == "concept":
        base += ".coding"
    conds = []
    if code:
        conds.append(f"@.{member} == {_jp_string(code)}")
    if system:
        conds.append(f"@.system == {_jp_string(system)}")
    elif system == "" and bar:
        conds.append("!(exists(@.system))")
    if not conds:
        raise bad_request("A token search value needs a code or a system")
    return f"{base} ? ({' && '.join(conds)})"


def _reference_path(param: Param, path: str, value: str) -> str:
    base = f"$.{path}.reference"
    if "/" in value:
        parts = value.rstrip("/").split("/")
        if len(parts) < 2:
            raise bad_request(f"Reference search value '{value[:80]}' is malformed")
        return _same_resource(base, parts[-2] + '/' + parts[-1])
    if not re.match(r"^[A-Za-z0-9\-.]{1,64}$", value):
        raise bad_request(f"Reference search value '{value[:80]}' is not an id or Type/id")
    if param.target:
        return _same_resource(base, param.target + '/' + value)
    return f'{base} ? (@ like_regex {_jp_string("^[A-Za-z]+/" + re.escape(value) + "(/_history/[0-9]+)?$")})'


def _same_resource(base: str, ref: str) -> str:
    """``Type/id`` matches a reference to that resource, versioned (``Type/id/_history/n``) or not."""
    return f"{base} ? (@ == {_jp_string(ref)} || @ starts with {_jp_string(ref + '/_history/')})"


def _date_sql(q: Query, column: str, raw: str) -> str:
    prefix, low, high = date_range(raw)
    if prefix in ("eq", "ne"):
        lo, hi = q.arg(low), q.arg(high)
        inside = f"({column} >= {lo} AND {column} < {hi})"
        return inside if prefix == "eq" else f"NOT {inside}"
    if prefix in ("gt", "sa"):
        return f"{column} >= {q.arg(high)}"
    if prefix == "ge":
        return f"{column} >= {q.arg(low)}"
    if prefix == "le":
        return f"{column} < {q.arg(high)}"
    return f"{column} < {q.arg(low)}"  # lt, eb


def _clause(q: Query, name: str, param: Param, raw: str) -> str:
    values = [v for v in raw.split(",") if v != ""]
    if not values:
        raise bad_request(f"Search parameter '{name}' has no value")
    if param.kind == "id":
        return f"id = ANY({q.arg(values)}::text[])"
    if param.kind == "lastupdated":
        return "(" + " OR ".join(_date_sql(q, "last_updated", v) for v in values) + ")"
    ors = []
    for value in values:
        for path in param.paths:
            if param.kind == "date":
                column = f"ehr_ts(content #>> {q.arg(path.split('.'))}::text[])"
                ors.append(_date_sql(q, column, value))
            elif param.kind == "reference":
                ors.append(f"content @? {q.arg(_reference_path(param, path, value))}::jsonpath")
            else:
                ors.append(f"content @? {q.arg(_token_path(param, path, value))}::jsonpath")
    return "(" + " OR ".join(ors) + ")"


def parse(rtype: str, params: list[tuple[str, str]]) -> Query:
    q = Query(rtype)
    known = params_for(rtype)
    for name, raw in params:
        if name == "_count":
            q.count = whole_number(name, raw, 0, MAX_PAGE_SIZE, clamp=True)
        elif name == "_offset":
            q.offset = whole_number(name, raw, 0, MAX_OFFSET, clamp=True)
        elif name == "_sort":
            if raw not in SORTS:
                raise bad_request(f"_sort supports only {', '.join(SORTS)}")
            q.sort = SORTS[raw]
        elif name == "_summary":
            if raw not in ("count", "false"):
                raise bad_request("_summary supports only count and false")
            q.summary_count = raw == "count"
        elif name == "_format":
            if "xml" in raw:
                raise bad_request("This server speaks FHIR JSON only", "not-supported")
        elif name in RESULT_PARAMS:
            continue
        else:
            base, _, modifier = name.partition(":")
            if base not in known:
                raise bad_request(f"Unknown search parameter '{name[:64]}' for {rtype}; supported: "
                                  f"{', '.join(sorted(known))}", "not-supported")
            if modifier:
                raise bad_request(f"Search modifier ':{modifier[:32]}' is not supported", "not-supported")
            q.where.append(_clause(q, base, known[base], raw))
            q.criteria.append((name, raw))
    return q


async def run(tx: Tx, q: Query, *, limit: int | None = None) -> tuple[int | None, list[Stored]]:
    where = " AND ".join(["tenant=$1", "type=$2", "NOT deleted", *q.where])
    total = None
    if limit is None:
        total = await tx.conn.fetchval(f"SELECT count(*) FROM ehr_resources WHERE {where}", tx.tenant, q.rtype, *q.args)
        if q.summary_count:
            return total, []
    rows = await tx.conn.fetch(
        f"SELECT id, version, last_updated, content FROM ehr_resources WHERE {where} ORDER BY {q.sort} "
        f"LIMIT {int(limit if limit is not None else q.count)} OFFSET {int(q.offset)}", tx.tenant, q.rtype, *q.args)
    return total, [Stored(q.rtype, r["id"], r["version"], r["last_updated"], False, r["content"]) for r in rows]


async def match(tx: Tx, rtype: str, query_string: str, limit: int = 2) -> list[Stored]:
    """Resources matching conditional criteria (``identifier=sys|val&...``), for conditional operations."""
    from urllib.parse import parse_qsl

    pairs = parse_qsl(query_string, keep_blank_values=True)
    if not pairs:
        raise bad_request(f"Conditional criteria for {rtype} are empty")
    q = parse(rtype, pairs)
    if not q.where:
        raise bad_request(f"Conditional criteria for {rtype} need at least one search parameter")
    _, rows = await run(tx, q, limit=limit)
    return rows


def bundle(base: str, q: Query, total: int | None, rows: list[Stored]) -> dict:
    def link(offset: int) -> str:
        pairs = [*q.criteria, ("_count", str(q.count)), ("_offset", str(offset))]
        if q.sort != SORTS["_lastUpdated"]:
            pairs.append(("_sort", "-_lastUpdated"))
        return f"{base}/{q.rtype}?{urlencode(pairs)}"

    links = [{"relation": "self", "url": link(q.offset)}]
    if not q.summary_count and total is not None and q.offset + q.count < total and q.count > 0:
        links.append({"relation": "next", "url": link(q.offset + q.count)})
    if q.offset > 0:
        links.append({"relation": "previous", "url": link(max(0, q.offset - q.count))})
    out = {"resourceType": "Bundle", "type": "searchset", "total": total, "link": links}
    if rows:
        out["entry"] = [{"fullUrl": f"{base}/{r.type}/{r.id}", "resource": r.content, "search": {"mode": "match"}}
                        for r in rows]
    return out
