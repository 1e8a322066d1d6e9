"""The EHR sandbox's OpenAPI 3.1 document (``GET /openapi.json``), built from the route table.

Every route in ``routes.ROUTES`` has one entry in ``OPERATIONS`` (keyed by path and method; a route
without one, or an entry without a route, is an error when the document is built), and the search
parameters, resource types and limits come from the modules that implement them, so the document
follows the server. The FHIR ``metadata`` CapabilityStatement remains the FHIR description of each
tenant's endpoint; this document describes the HTTP surface for client generators and API testers.
"""
from __future__ import annotations

from functools import lru_cache

from services.core.tenancy import TENANT_ID
from services.ehr import families, faults, search, values
from services.ehr.bulk import operations as bulk_ops
from services.ehr.config import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from services.ehr.subscriptions.spec import CONTENTS
from services.ehr.validation import ID_RE, resource_types

FHIR_JSON = "application/fhir+json"
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
HTML = "text/html"
F = "/fhir/{tenant}"
I = "/inbox/{tenant}"
_REF = "#/components/schemas/"
_MAX_NUMBER = 10**values.MAX_DIGITS - 1

# ---- schemas -------------------------------------------------------------------------------------

OUTCOME = {
    "type": "object", "required": ["resourceType", "issue"],
    "properties": {
        "resourceType": {"const": "OperationOutcome"},
        "issue": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["severity", "code"],
            "properties": {"severity": {"enum": ["fatal", "error", "warning", "information"]},
                           "code": {"type": "string"}, "diagnostics": {"type": "string"},
                           "expression": {"type": "array", "items": {"type": "string"}}}}},
    },
}
NARRATIVE = {
    "type": "object", "required": ["status", "div"],
    "properties": {"status": {"enum": ["generated", "extensions", "additional", "empty"]},
                   "div": {"type": "string", "description": "XHTML: one div in the XHTML namespace, FHIR's "
                                                           "narrative rules (no scripts, event attributes, ...)"}},
}


def _resource_in(types: dict) -> dict:
    """A resource as sent, of ``types`` (a schema); the server validates the rest (R4B structure, bindings)."""
    return {"type": "object", "required": ["resourceType"], "additionalProperties": True,
            "properties": {"resourceType": types, "id": {"type": "string", "pattern": ID_RE.pattern},
                           "text": {"$ref": _REF + "Narrative"}}}


STORED = {
    "type": "object", "required": ["resourceType", "id", "meta"], "additionalProperties": True,
    "properties": {"resourceType": {"type": "string"}, "id": {"type": "string"},
                   "meta": {"type": "object", "required": ["versionId", "lastUpdated"],
                            "properties": {"versionId": {"type": "string"}, "lastUpdated": {"type": "string"}}}},
}
BUNDLE = {
    "type": "object", "required": ["resourceType", "type"], "additionalProperties": True,
    "properties": {
        "resourceType": {"const": "Bundle"},
        "type": {"enum": ["searchset", "history", "transaction-response", "batch-response",
                          "subscription-notification"]},
        "total": {"type": "integer", "minimum": 0},
        "link": {"type": "array", "items": {"type": "object", "required": ["relation", "url"]}},
        "entry": {"type": "array", "items": {"type": "object"}},
    },
}
TX_BUNDLE = {
    "type": "object", "required": ["resourceType", "type"],
    "properties": {
        "resourceType": {"const": "Bundle"}, "type": {"enum": ["transaction", "batch"]},
        "entry": {"type": "array", "items": {
            "type": "object", "required": ["request"],
            "properties": {
                "fullUrl": {"type": "string"}, "resource": {"$ref": _REF + "Resource"},
                "request": {"type": "object", "required": ["method", "url"], "properties": {
                    "method": {"enum": ["GET", "POST", "PUT", "DELETE"]}, "url": {"type": "string"},
                    "ifMatch": {"type": "string"}, "ifNoneExist": {"type": "string"},
                    "ifNoneMatch": {"type": "string"}, "ifModifiedSince": {"type": "string"}}}}}},
    },
}
PARAMETERS = {
    "type": "object", "required": ["resourceType"],
    "properties": {"resourceType": {"const": "Parameters"},
                   "parameter": {"type": "array", "items": {
                       "type": "object", "required": ["name"], "additionalProperties": True,
                       "properties": {"name": {"type": "string"}}}}},
}
TOKEN = {"type": "object", "required": ["access_token", "token_type", "expires_in", "scope"],
         "properties": {"access_token": {"type": "string"}, "token_type": {"const": "bearer"},
                        "expires_in": {"type": "integer"}, "scope": {"type": "string"}}}
OAUTH_ERROR = {"type": "object", "required": ["error"],
               "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}}}
FAULTS = {
    "type": "object", "additionalProperties": False,
    "properties": {"latency_ms": {"type": "integer", "minimum": 0, "maximum": faults.MAX_LATENCY_MS},
                   "error_rate": {"type": "number", "minimum": 0, "maximum": 1},
                   "error_status": {"enum": list(faults.ERROR_STATUSES)},
                   "retry_after_s": {"type": "integer", "minimum": 0, "maximum": 3600},
                   "outage_s": {"type": "number", "minimum": 0, "maximum": faults.MAX_OUTAGE_S},
                   "drop_writes": {"type": "boolean"}, "drop_notifications": {"type": "boolean"},
                   "export_delay_s": {"type": "number", "minimum": 0, "maximum": faults.MAX_EXPORT_DELAY_S}},
}
MANIFEST = {
    "type": "object", "required": ["transactionTime", "request", "requiresAccessToken", "output", "error"],
    "properties": {
        "transactionTime": {"type": "string"}, "request": {"type": "string"},
        "requiresAccessToken": {"type": "boolean"},
        "output": {"type": "array", "items": {"type": "object", "required": ["type", "url"], "properties": {
            "type": {"type": "string"}, "url": {"type": "string"}, "count": {"type": "integer", "minimum": 0}}}},
        "error": {"type": "array", "items": {"type": "object", "required": ["type", "url"]}}},
}

FAMILY_REQUEST = {"type": "object", "additionalProperties": False, "required": ["family"],
                  "properties": {"family": {"enum": list(families.FAMILIES)}}}
FAMILY = {"type": "object", "required": ["tenant", "family"],
          "properties": {"tenant": {"type": "string"}, "family": {"enum": list(families.FAMILIES)}}}

# ---- parameters ----------------------------------------------------------------------------------


def _path(name: str, schema: dict, description: str = "") -> dict:
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": description}


def _query(name: str, schema: dict, description: str = "") -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _header(name: str, description: str) -> dict:
    return {"name": name, "in": "header", "required": False, "schema": {"type": "string"}, "description": description}


TENANT = _path("tenant", {"type": "string", "pattern": TENANT_ID.pattern}, "The tenant whose EHR this is")
ID = {"type": "string", "pattern": ID_RE.pattern}
DATE = {"type": "string", "pattern": values.DATE_SEARCH_VALUE.pattern,
        "description": "A FHIR date search value, optionally prefixed (eq ne gt lt ge le sa eb)"}
COUNT = _query("_count", {"type": "integer", "minimum": 0, "maximum": _MAX_NUMBER},
               f"Page size (default {DEFAULT_PAGE_SIZE}; larger values are served as {MAX_PAGE_SIZE})")
OFFSET = _query("_offset", {"type": "integer", "minimum": 0, "maximum": _MAX_NUMBER},
                f"Results to skip (at most {search.MAX_OFFSET})")
_KIND_SCHEMA = {"date": DATE, "lastupdated": DATE}
RESULT = [COUNT, OFFSET, _query("_sort", {"enum": list(search.SORTS)}),
          _query("_summary", {"enum": ["count", "false"]}), _query("_total", {"type": "string"}),
          _query("_format", {"enum": ["json", FHIR_JSON, JSON]}), _query("_pretty", {"enum": ["true", "false"]})]


def search_parameters(rtype: str | None) -> list[dict]:
    """The query parameters a search on ``rtype`` takes (``None``: those every type takes)."""
    params = search.params_for(rtype) if rtype else search.COMMON
    return RESULT + [_query(name, _KIND_SCHEMA.get(p.kind, {"type": "string"}), f"{p.kind} search parameter")
                     for name, p in sorted(params.items())]


# ---- responses -----------------------------------------------------------------------------------


def _content(media: str, schema: str | dict) -> dict:
    return {media: {"schema": {"$ref": _REF + schema} if isinstance(schema, str) else schema}}


def _ok(description: str, schema: str | dict, media: str = FHIR_JSON, headers: dict | None = None) -> dict:
    out = {"description": description, "content": _content(media, schema)}
    if headers:
        out["headers"] = headers
    return out


_ERRORS = {
    400: "The request is malformed (a parameter, header or body value the server cannot use)",
    401: "No valid access token (SMART Backend Services bearer token)",
    403: "The token's scopes do not allow this interaction, or the EHR family refuses it (epic-like: no "
         "Subscriptions, no Task / Observation / DetectedIssue / Provenance / Device / AuditEvent writes)",
    404: "Unknown tenant, resource type or resource",
    405: "The method is not supported here",
    406: "The Accept header asks for a format the server does not produce",
    409: "The write conflicted with another write",
    410: "The resource was deleted",
    412: "A precondition (If-Match, conditional criteria) failed",
    413: "The body is larger than the server accepts",
    415: "The Content-Type is not supported",
    422: "The resource failed validation",
    429: "Throttled (fault injection)",
    500: "Unexpected failure (the server closes the connection: Connection: close)",
    503: "Unavailable (fault injection or a dependency); see Retry-After",
}
ETAG = {"ETag": {"required": True, "schema": {"type": "string"}, "description": 'The version, as W/"n"'}}
WRITTEN = {**ETAG, "Location": {"required": True, "schema": {"type": "string"}}}


def _errors(*codes: int) -> dict:
    return {str(c): {"$ref": f"#/components/responses/Error{c}"} for c in codes}


FHIR_ERRORS = (400, 401, 403, 404, 413, 415, 429, 500, 503)
WRITE_ERRORS = FHIR_ERRORS + (409, 412, 422)


def _op(summary: str, responses: dict, *, params: list | None = None, body: dict | None = None,
        security: str | None = "smart", tags: tuple[str, ...] = ("FHIR",)) -> dict:
    op = {"summary": summary, "tags": list(tags), "parameters": [TENANT, *(params or [])], "responses": responses}
    if body is not None:
        op["requestBody"] = body
    op["security"] = [{security: []}] if security else []
    return op


def _body(media_schemas: dict, required: bool = True) -> dict:
    return {"required": required, "content": {m: {"schema": s} for m, s in media_schemas.items()}}


def _resource_body() -> dict:
    return _body({FHIR_JSON: {"$ref": _REF + "Resource"}, JSON: {"$ref": _REF + "Resource"}})


def _parameters_body() -> dict:
    return _body({FHIR_JSON: {"$ref": _REF + "Parameters"}}, required=False)


def _form(properties: dict, required: list[str] | None = None) -> dict:
    return _body({FORM: {"type": "object", "properties": properties, "required": required or []}},
                 required=bool(required))


def _html(description: str, *codes: int) -> dict:
    """Inbox pages: HTML, except redirects (3xx), which have no body."""
    return {str(c): {"description": description if c < 400 else _ERRORS.get(c, "Refused"),
                     **({} if 300 <= c < 400 else {"content": {HTML: {"schema": {"type": "string"}}}})}
            for c in codes}


@lru_cache(maxsize=1)
def operations() -> dict[tuple[str, str], dict]:
    """(path, method) -> OpenAPI operation, for every route the server has."""
    rtype = _path("rtype", {"$ref": _REF + "ResourceType"}, "A FHIR R4B resource type")
    rid = _path("rid", ID, "The resource id")
    search_any = search_parameters(None)
    smart_form = {"grant_type": {"const": "client_credentials"}, "scope": {"type": "string"},
                  "client_assertion_type": {"const": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
                  "client_assertion": {"type": "string"}}
    history = [_query("_since", DATE, "Versions written at or after this instant"),
               _query("_count", COUNT["schema"]), _query("_offset", OFFSET["schema"])]
    events = [_query("eventsSinceNumber", {"type": "integer", "minimum": 0, "maximum": _MAX_NUMBER}),
              _query("eventsUntilNumber", {"type": "integer", "minimum": 0, "maximum": _MAX_NUMBER}),
              _query("content", {"enum": list(CONTENTS)})]
    status_params = [_query("id", {"type": "string"}, "Subscription ids, comma-separated"),
                     _query("status", {"type": "string"}, "requested, active, error or off (comma-separated)")]
    find = [_query("start", DATE), _query("end", DATE), _query("practitioner", {"type": "string"}),
            _query("actor", {"type": "string"}), _query("schedule", {"type": "string"}),
            _query("_count", {"type": "integer", "minimum": 1, "maximum": _MAX_NUMBER})]
    admin = {"security": "admin", "tags": ("admin",)}
    inbox = {"security": None, "tags": ("inbox",)}
    client_id = _path("client_id", {"type": "string", "pattern": r"^[A-Za-z0-9._:-]{1,128}$"})
    tid = _path("tid", ID)
    export_params = [
        _query("_type", {"type": "string"}, "Resource types, comma-separated"),
        _query("_since", {"type": "string", "pattern": values.DATE_SEARCH_VALUE.pattern},
               "Only resources changed after this instant"),
        _query("_outputFormat", {"enum": list(bulk_ops.OUTPUT_FORMATS)}),
        _header("Prefer", "respond-async (required); handling=lenient ignores unsupported parameters"),
        _header("Accept", "application/fhir+json")]
    kickoff = {"202": {"description": "Accepted: poll the Content-Location URL",
                       "headers": {"Content-Location": {"required": True, "schema": {"type": "string"}}},
                       "content": _content(FHIR_JSON, "OperationOutcome")},
               **_errors(400, 401, 403, 404, 406, 429, 500, 503)}
    job = _path("job", {"type": "string"}, "The export job")
    ops = {
        ("/healthz", "GET"): {"summary": "Liveness (and database reachability)", "tags": ["platform"],
                              "security": [], "responses": {"200": _ok("Up", {"type": "object"}, JSON)}},
        ("/openapi.json", "GET"): {"summary": "This document", "tags": ["platform"], "security": [],
                                   "responses": {"200": _ok("OpenAPI 3.1", {"type": "object"}, JSON)}},
        ("/admin/tenants", "POST"): {**_op("Create a tenant's EHR", {
            "200": _ok("Existed", {"type": "object"}, JSON), "201": _ok("Created", {"type": "object"}, JSON),
            **_errors(400, 401, 413, 415)}, body=_body({JSON: {"type": "object", "required": ["id"], "properties": {
                "id": {"type": "string", "pattern": TENANT_ID.pattern}}}}), **admin), "parameters": []},
        ("/admin/tenants", "GET"): {**_op("List tenants", {"200": _ok("Tenants", {"type": "object"}, JSON),
                                                           **_errors(401)}, **admin), "parameters": []},
        ("/admin/tenants/{tenant}/clients/{client_id}", "PUT"): _op(
            "Register (or replace) a SMART Backend Services client", {
                "200": _ok("Registered", {"type": "object"}, JSON), **_errors(400, 401, 404, 413, 415)},
            params=[client_id], body=_body({JSON: {"type": "object", "required": ["jwks", "scopes"], "properties": {
                "jwks": {"type": "object"}, "scopes": {"type": "array", "items": {"type": "string"}}}}}), **admin),
        ("/admin/tenants/{tenant}/clients", "GET"): _op("List the tenant's SMART clients (with revoked ones)", {
            "200": _ok("Clients", {"type": "object"}, JSON), **_errors(401, 404)}, **admin),
        ("/admin/tenants/{tenant}/clients/{client_id}", "DELETE"): _op(
            "Revoke a SMART client: its token requests and its access tokens are refused from now on", {
                "200": _ok("Revoked", {"type": "object"}, JSON), **_errors(400, 401, 404)},
            params=[client_id], **admin),
        ("/admin/tenants/{tenant}/faults", "GET"): _op("The tenant's injected faults", {
            "200": _ok("Faults", "Faults", JSON), **_errors(401, 404)}, **admin),
        ("/admin/tenants/{tenant}/faults", "PUT"): _op("Inject faults into the tenant's FHIR API", {
            "200": _ok("Faults", "Faults", JSON), **_errors(400, 401, 404, 413, 415)},
            body=_body({JSON: {"$ref": _REF + "Faults"}}), **admin),
        ("/admin/tenants/{tenant}/faults", "DELETE"): _op("Clear the tenant's faults", {
            "200": _ok("Faults", "Faults", JSON), **_errors(401, 404)}, **admin),
        ("/admin/tenants/{tenant}/family", "GET"): _op("Which EHR family the tenant's FHIR API plays", {
            "200": _ok("Family", "Family", JSON), **_errors(401, 404)}, **admin),
        ("/admin/tenants/{tenant}/family", "PUT"): _op(
            "Set the EHR family: epic-like (no Subscriptions, patient-scoped DocumentReference search, "
            "no Task/Observation/Provenance writes) or fhir-server", {
                "200": _ok("Family", "Family", JSON), **_errors(400, 401, 404, 413, 415)},
            body=_body({JSON: {"$ref": _REF + "FamilyRequest"}}), **admin),
        ("/admin/tenants/{tenant}/inbox-links", "POST"): _op(
            "A sign-in link of the inbox for one practitioner (signed, single use, 15 min by default)", {
                "201": _ok("Link", {"type": "object", "required": ["url", "practitioner", "expires_at"]}, JSON),
                **_errors(400, 401, 404, 413, 415)},
            body=_body({JSON: {"type": "object", "required": ["practitioner"], "properties": {
                "practitioner": {"type": "string"}, "lifetime_s": {"type": "integer", "minimum": 1,
                                                                   "maximum": 3600}}}}), **admin),
        ("/admin/tenants/{tenant}/notify-signing-secret", "PUT"): _op(
            "Set the secret the tenant's rest-hook notifications are signed with (X-Vigil-Signature)", {
                "200": _ok("Set", {"type": "object", "required": ["set", "fingerprint"]}, JSON),
                **_errors(400, 401, 404, 413, 415)},
            body=_body({JSON: {"type": "object", "required": ["secret"], "properties": {
                "secret": {"type": "string", "minLength": 16, "maxLength": 256}}}}), **admin),
        ("/admin/tenants/{tenant}/notify-signing-secret", "GET"): _op(
            "Whether the tenant's notifications are signed, and the secret's fingerprint (never the secret)", {
                "200": _ok("State", {"type": "object", "required": ["set", "fingerprint"]}, JSON),
                **_errors(401, 404)}, **admin),
        ("/admin/tenants/{tenant}/notify-signing-secret", "DELETE"): _op(
            "Stop signing the tenant's notifications", {
                "200": _ok("State", {"type": "object", "required": ["set", "fingerprint"]}, JSON),
                **_errors(401, 404)}, **admin),
        (f"{I}/login", "GET"): _op("Redeem a practitioner's sign-in link: a session bound to that practitioner", {
            **_html("Signed in", 303), **_html("", 401, 404)},
            params=[_query("token", {"type": "string"})], **inbox),
        (I, "GET"): _op("The signed-in practitioner's open Tasks", _html("Page", 200, 401, 404), **inbox),
        (f"{I}/tasks/{{tid}}", "GET"): _op("One Task with its evidence (403: another practitioner's Task)",
                                           _html("Page", 200, 401, 403, 404), params=[tid], **inbox),
        **{(f"{I}/tasks/{{tid}}/{verb}", "POST"): _op(f"{verb.capitalize()} the Task", {
            **_html("Done", 303), **_html("", 400, 401, 403, 404, 409, 413)}, params=[tid],
            body=_form({"version": {"type": "string"}, "csrf": {"type": "string"}, "reason": {"type": "string"},
                        "comment": {"type": "string"}}), **inbox) for verb in ("accept", "override")},
        (f"{F}/metadata", "GET"): _op("The CapabilityStatement", {
            "200": _ok("CapabilityStatement", {"type": "object", "required": ["resourceType"], "properties": {
                "resourceType": {"const": "CapabilityStatement"}}}), **_errors(404, 429, 500, 503)}, security=None),
        (f"{F}/.well-known/smart-configuration", "GET"): _op("SMART configuration", {
            "200": _ok("SMART configuration", {"type": "object"}, JSON), **_errors(404, 429, 500, 503)},
            security=None),
        (f"{F}/auth/token", "POST"): _op("Token endpoint (client_credentials with a private_key_jwt assertion)", {
            "200": _ok("Access token", "Token", JSON), "400": _ok("OAuth error", "OAuthError", JSON),
            "401": _ok("OAuth error", "OAuthError", JSON), **_errors(404, 413, 415, 429, 500, 503)},
            body=_form(smart_form, ["grant_type", "client_assertion_type", "client_assertion"]), security=None),
        **{(path, "POST"): _op("Transaction or batch", {"200": _ok("transaction-response or batch-response",
                                                                   "Bundle"), **_errors(*WRITE_ERRORS)},
                               body=_body({FHIR_JSON: {"$ref": _REF + "TransactionBundle"}}))
           for path in (F, F + "/")},
        (f"{F}/Subscription/$status", "GET"): _op("Subscription status (Backport IG $status)", {
            "200": _ok("searchset of SubscriptionStatus", "Bundle"), **_errors(*FHIR_ERRORS)}, params=status_params),
        (f"{F}/Subscription/$status", "POST"): _op("Subscription status (Backport IG $status)", {
            "200": _ok("searchset of SubscriptionStatus", "Bundle"), **_errors(*FHIR_ERRORS)},
            params=status_params, body=_parameters_body()),
        **{(f"{F}/Subscription/{{rid}}/$status", m): _op("One Subscription's status", {
            "200": _ok("searchset of SubscriptionStatus", "Bundle"), **_errors(*FHIR_ERRORS)}, params=[rid],
            **({"body": _parameters_body()} if m == "POST" else {})) for m in ("GET", "POST")},
        **{(f"{F}/Subscription/{{rid}}/$events", m): _op("Retained events (Backport IG $events)", {
            "200": _ok("query-event notification Bundle", "Bundle"), **_errors(*FHIR_ERRORS)}, params=[rid, *events],
            **({"body": _parameters_body()} if m == "POST" else {})) for m in ("GET", "POST")},
        (f"{F}/$export", "GET"): _op("Bulk Data system-level export (asynchronous)", kickoff,
                                      params=export_params, tags=("Bulk Data",)),
        (f"{F}/Patient/$export", "GET"): _op("Bulk Data export of all patients' compartments (asynchronous)",
                                              kickoff, params=export_params, tags=("Bulk Data",)),
        (f"{F}/Group/{{rid}}/$export", "GET"): _op("Bulk Data export of a Group's members (asynchronous)",
                                                   kickoff, params=[rid, *export_params], tags=("Bulk Data",)),
        (f"{F}/$export-status/{{job}}", "GET"): _op("An export's status: in progress (202) or its manifest (200)", {
            "200": _ok("Complete: the manifest", "ExportManifest", JSON),
            "202": {"description": "In progress", "headers": {
                "X-Progress": {"required": True, "schema": {"type": "string"}},
                "Retry-After": {"required": True, "schema": {"type": "string"}}}},
            **_errors(401, 404, 429, 500, 503)}, params=[job], tags=("Bulk Data",)),
        (f"{F}/$export-status/{{job}}", "DELETE"): _op("Cancel an export", {
            "202": _ok("Cancelled", "OperationOutcome"), **_errors(401, 404, 429, 500, 503)}, params=[job],
            tags=("Bulk Data",)),
        (f"{F}/$export-file/{{job}}/{{name}}", "GET"): _op("One output file of a complete export", {
            "200": {"description": "NDJSON, one resource per line",
                    "content": {"application/fhir+ndjson": {"schema": {"type": "string"}}}},
            **_errors(401, 404, 429, 500, 503)},
            params=[job, _path("name", {"type": "string"}, "<Type>.<n>.ndjson")], tags=("Bulk Data",)),
        (f"{F}/Appointment/$find", "GET"): _op("Free slots as proposed Appointments", {
            "200": _ok("searchset", "Bundle"), **_errors(*FHIR_ERRORS)}, params=find),
        (f"{F}/Appointment/$find", "POST"): _op("Free slots as proposed Appointments", {
            "200": _ok("searchset", "Bundle"), **_errors(*FHIR_ERRORS)}, params=find,
            body=_form({p["name"]: p["schema"] for p in find}, [])),
        (f"{F}/Appointment/$book", "POST"): _op("Book an Appointment on free Slots", {
            "201": _ok("The booked Appointment", "StoredResource", headers=WRITTEN), **_errors(*WRITE_ERRORS)},
            body=_body({FHIR_JSON: {"oneOf": [_resource_in({"const": "Appointment"}),
                                              {"$ref": _REF + "Parameters"}]}})),
        (f"{F}/{{rtype}}/_search", "POST"): _op("Search (form body)", {
            "200": _ok("searchset", "Bundle"), **_errors(*FHIR_ERRORS)}, params=[rtype],
            body=_form({p["name"]: p["schema"] for p in search_any}, [])),
        (f"{F}/{{rtype}}/_history", "GET"): _op("Type history", {
            "200": _ok("history", "Bundle"), **_errors(*FHIR_ERRORS)}, params=[rtype, *history]),
        (f"{F}/{{rtype}}/{{rid}}/_history/{{vid}}", "GET"): _op("Read a version (vread)", {
            "200": _ok("The version", "StoredResource", headers=ETAG), **_errors(*FHIR_ERRORS, 410)},
            params=[rtype, rid, _path("vid", {"type": "string", "pattern": "^[0-9]{1,10}$"})]),
        (f"{F}/{{rtype}}/{{rid}}/_history", "GET"): _op("Instance history", {
            "200": _ok("history", "Bundle"), **_errors(*FHIR_ERRORS)}, params=[rtype, rid, *history]),
        (f"{F}/{{rtype}}/{{rid}}", "GET"): _op("Read", {
            "200": _ok("The current version", "StoredResource", headers=ETAG),
            "304": {"description": "Not modified (If-None-Match)"}, **_errors(*FHIR_ERRORS, 410)},
            params=[rtype, rid, _header("If-None-Match", 'W/"n"')]),
        (f"{F}/{{rtype}}/{{rid}}", "PUT"): _op("Update (or create with this id)", {
            "200": _ok("Updated", "StoredResource", headers=WRITTEN),
            "201": _ok("Created", "StoredResource", headers=WRITTEN), **_errors(*WRITE_ERRORS)},
            params=[rtype, rid, _header("If-Match", 'W/"n": update only that version')],
            body=_resource_body()),
        (f"{F}/{{rtype}}/{{rid}}", "DELETE"): _op("Delete", {
            "204": {"description": "Deleted (or already gone)"}, **_errors(*WRITE_ERRORS)}, params=[rtype, rid]),
        (f"{F}/{{rtype}}", "GET"): _op("Search", {"200": _ok("searchset", "Bundle"), **_errors(*FHIR_ERRORS)},
                                       params=[rtype, *search_any]),
        (f"{F}/{{rtype}}", "POST"): _op("Create", {
            "200": _ok("An existing match (If-None-Exist)", "StoredResource", headers=WRITTEN),
            "201": _ok("Created", "StoredResource", headers=WRITTEN), **_errors(*WRITE_ERRORS)},
            params=[rtype, _header("If-None-Exist", "Search criteria: create only if nothing matches")],
            body=_resource_body()),
        (f"{F}/{{rtype}}", "PUT"): _op("Conditional update (criteria in the query string)", {
            "200": _ok("Updated", "StoredResource", headers=WRITTEN),
            "201": _ok("Created", "StoredResource", headers=WRITTEN), **_errors(*WRITE_ERRORS)},
            params=[rtype, *search_any, _header("If-Match", 'W/"n"')], body=_resource_body()),
    }
    return ops


def typed_searches() -> dict[str, dict]:
    """``GET /fhir/{tenant}/<Type>`` for each type with its own search parameters (the generic
    ``{rtype}`` path lists only those every type takes)."""
    return {f"{F}/{rtype}": {"get": _op(f"Search {rtype}", {"200": _ok("searchset", "Bundle"),
                                                            **_errors(*FHIR_ERRORS)},
                                        params=search_parameters(rtype))}
            for rtype in sorted(search.TYPE_PARAMS)}


def document(routes: list[tuple[str, list[str], object]], server: str = "") -> dict:
    """The OpenAPI document of ``routes`` (the application's route table)."""
    ops = operations()
    paths: dict[str, dict] = {}
    for path, methods, _handler in routes:
        for method in methods:
            if (path, method) not in ops:
                raise LookupError(f"route {method} {path} has no OpenAPI operation")
            paths.setdefault(path, {})[method.lower()] = ops[(path, method)]
    routed = {(p, m) for p, methods, _ in routes for m in methods}
    stale = set(ops) - routed
    if stale:
        raise LookupError(f"OpenAPI operations without a route: {sorted(stale)}")
    paths.update(typed_searches())
    doc = {
        "openapi": "3.1.0",
        "info": {"title": "Vigil EHR sandbox", "version": "0.1.0",
                 "description": "A multi-tenant FHIR R4 (R4B) server: REST interactions, transactions, search, "
                                "history, Subscriptions (R5 Backport IG), Bulk Data $export, scheduling operations, "
                                "SMART Backend Services, an admin API and a clinician inbox. Errors are OperationOutcomes. "
                                "Each tenant's FHIR CapabilityStatement is at /fhir/{tenant}/metadata."},
        "paths": paths,
        "components": {
            "schemas": {
                "OperationOutcome": OUTCOME, "Narrative": NARRATIVE, "ResourceType": {"enum": sorted(resource_types())},
                "Resource": _resource_in({"$ref": _REF + "ResourceType"}), "StoredResource": STORED, "Bundle": BUNDLE,
                "TransactionBundle": TX_BUNDLE, "Parameters": PARAMETERS, "Token": TOKEN, "OAuthError": OAUTH_ERROR,
                "Faults": FAULTS, "ExportManifest": MANIFEST, "Family": FAMILY, "FamilyRequest": FAMILY_REQUEST},
            "responses": {f"Error{c}": {"description": text, "content": _content(FHIR_JSON, "OperationOutcome")}
                          for c, text in _ERRORS.items()},
            "securitySchemes": {
                "smart": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                          "description": "SMART Backend Services: a token from /fhir/{tenant}/auth/token"},
                "admin": {"type": "http", "scheme": "bearer", "description": "The platform admin secret"}},
        },
    }
    if server:
        doc["servers"] = [{"url": server}]
    return doc

