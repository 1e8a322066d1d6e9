"""The notification receiver's OpenAPI 3.1 document (``GET /openapi.json``), built from its route
table: every route has one operation here, and a route without one (or an operation without a
route) is an error when the document is built."""
from __future__ import annotations

from services.core.tenancy import TENANT_ID
from services.ingest.receiver import auth
from services.ingest.receiver.r4 import TYPES as R4_TYPES

FHIR_JSON = "application/fhir+json"
JSON = "application/json"
_REF = "#/components/schemas/"

OUTCOME = {
    "type": "object", "required": ["resourceType", "issue"],
    "properties": {
        "resourceType": {"const": "OperationOutcome"},
        "issue": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["severity", "code", "diagnostics"],
            "properties": {"severity": {"enum": ["error", "information"]}, "code": {"type": "string"},
                           "diagnostics": {"type": "string", "maxLength": 300}}}},
    },
}
NOTIFICATION = {
    "type": "object", "required": ["resourceType", "type", "entry"],
    "description": "An R4 Subscriptions Backport IG notification: a history Bundle whose first entry is the "
                   "SubscriptionStatus (a Parameters resource), then the focus resources (full-resource).",
    "properties": {
        "resourceType": {"const": "Bundle"}, "type": {"const": "history"},
        "entry": {"type": "array", "minItems": 1, "items": {"type": "object", "properties": {
            "fullUrl": {"type": "string"}, "resource": {"type": "object"}}}},
    },
    "examples": [{"resourceType": "Bundle", "type": "history", "entry": [{"resource": {
        "resourceType": "Parameters", "parameter": [
            {"name": "subscription", "valueReference": {"reference": "Subscription/s1"}},
            {"name": "status", "valueCode": "active"}, {"name": "type", "valueCode": "heartbeat"},
            {"name": "events-since-subscription-start", "valueString": "0"}]}}]}],
}

R4_RESOURCE = {
    "type": "object", "required": ["resourceType", "id", "meta"],
    "description": "The version that matched the R4 Subscription's criteria (channel.payload set); an empty body "
                   "is also accepted (no payload): ingest then searches by _lastUpdated for what changed.",
    "properties": {"resourceType": {"enum": list(R4_TYPES)}, "id": {"type": "string"},
                   "meta": {"type": "object", "required": ["versionId"],
                            "properties": {"versionId": {"type": "string"}, "lastUpdated": {"type": "string"}}}},
}
_R4_ERRORS = {
    400: "Not a resource of the endpoint's type with an id and meta.versionId (the diagnostics name the path)",
    401: "Missing or wrong bearer token (the Subscription's channel header)",
    403: "The tenant's integration profile has no r4-criteria trigger",
    404: "Unknown tenant, or a resource type without an R4 endpoint",
    413: "The body is larger than the receiver accepts (or its Content-Length is not a number)",
    415: "A body whose Content-Type is not FHIR JSON",
    422: "The EHR refused the search an empty notification needs",
    500: "Unexpected failure (the receiver closes the connection: Connection: close)",
    503: "The EHR, the broker or the database is briefly unavailable; retry after Retry-After",
}

_ERRORS = {
    400: "Not a valid notification (the diagnostics name the path, never a value)",
    401: "Missing or wrong bearer token (the Subscription's channel header), or a bad signature",
    404: "Unknown tenant",
    413: "The body is larger than the receiver accepts (or its Content-Length is not a number)",
    415: "The Content-Type is not FHIR JSON",
    422: "The EHR refused a read the notification needs",
    500: "Unexpected failure (the receiver closes the connection: Connection: close)",
    503: "The EHR, the broker or the database is briefly unavailable; retry after Retry-After",
}
_ERROR_HEADERS = {
    401: {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}},
    503: {"Retry-After": {"required": True, "schema": {"type": "string", "pattern": "^[0-9]+$"}}},
}


def _outcome(code: int, description: str) -> dict:
    out = {"description": description, "content": {FHIR_JSON: {"schema": {"$ref": _REF + "OperationOutcome"}}}}
    if code in _ERROR_HEADERS:
        out["headers"] = _ERROR_HEADERS[code]
    return out


OPERATIONS: dict[tuple[str, str], dict] = {
    ("/notify/{tenant}", "POST"): {
        "summary": "Receive a Subscription notification from the tenant's EHR (rest-hook channel)",
        "description": "200 only after every event was published and acknowledged by the broker (or was a "
                       "duplicate). Nothing is published for a refused request.",
        "parameters": [
            {"name": "tenant", "in": "path", "required": True, "schema": {"type": "string",
                                                                         "pattern": TENANT_ID.pattern}},
            {"name": auth.SIGNATURE_HEADER, "in": "header", "required": False,
             "schema": {"type": "string", "pattern": "^sha256=[0-9a-f]{64}$"},
             "description": "HMAC-SHA256 of the raw body keyed by the tenant's notification signing secret "
                            "(required unless the tenant sets notify_auth = \"header-token\"); or "
                            f"{auth.MEDPLUM_SIGNATURE_HEADER} (hex, Medplum's form)"},
            {"name": auth.MEDPLUM_SIGNATURE_HEADER, "in": "header", "required": False,
             "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
             "description": "Medplum's signature header: hex HMAC-SHA256 of the raw body"},
        ],
        "requestBody": {"required": True, "content": {
            FHIR_JSON: {"schema": {"$ref": _REF + "Notification"}},
            JSON: {"schema": {"$ref": _REF + "Notification"}}}},
        "security": [{"channelToken": []}],
        "responses": {"200": _outcome(200, "Accepted: an informational OperationOutcome with the counts"),
                      **{str(code): _outcome(code, text) for code, text in _ERRORS.items()}},
    },
    ("/notify/{tenant}/r4/{resource_type}", "POST"): {
        "summary": "Receive a classic R4 criteria-based Subscription notification (rest-hook): the resource or "
                   "an empty body",
        "description": "200 after the version was published and acknowledged by the broker, or recognised as a "
                       "duplicate or an out-of-order (older) version, which publish nothing; for an empty body, "
                       "after the _lastUpdated search found and published what changed. Nothing is published for a "
                       "refused request.",
        "parameters": [
            {"name": "tenant", "in": "path", "required": True, "schema": {"type": "string",
                                                                         "pattern": TENANT_ID.pattern}},
            {"name": "resource_type", "in": "path", "required": True, "schema": {"enum": list(R4_TYPES)}},
        ],
        "requestBody": {"required": False, "content": {
            FHIR_JSON: {"schema": {"$ref": _REF + "R4Resource"}},
            JSON: {"schema": {"$ref": _REF + "R4Resource"}}}},
        "security": [{"channelToken": []}],
        "responses": {"200": _outcome(200, "Accepted: an informational OperationOutcome with the counts"),
                      **{str(code): _outcome(code, text) for code, text in _R4_ERRORS.items()}},
    },
    ("/notify/{tenant}/r4/{resource_type}/{path_type}/{rid}", "PUT"): {
        "summary": "Receive a classic R4 criteria notification delivered as HAPI FHIR and Smile CDR do: PUT of the "
                   "resource to [endpoint]/[Type]/[id]",
        "description": "As the POST, with the resource required and its id equal to the URL's.",
        "parameters": [
            {"name": "tenant", "in": "path", "required": True, "schema": {"type": "string",
                                                                         "pattern": TENANT_ID.pattern}},
            {"name": "resource_type", "in": "path", "required": True, "schema": {"enum": list(R4_TYPES)}},
            {"name": "path_type", "in": "path", "required": True, "schema": {"enum": list(R4_TYPES)},
             "description": "The resource type again (the EHR appends [Type]/[id] to the endpoint)"},
            {"name": "rid", "in": "path", "required": True, "schema": {"type": "string",
                                                                      "pattern": "^[A-Za-z0-9\\-.]{1,64}$"}},
        ],
        "requestBody": {"required": True, "content": {
            FHIR_JSON: {"schema": {"$ref": _REF + "R4Resource"}},
            JSON: {"schema": {"$ref": _REF + "R4Resource"}}}},
        "security": [{"channelToken": []}],
        "responses": {"200": _outcome(200, "Accepted: an informational OperationOutcome with the counts"),
                      **{str(code): _outcome(code, text) for code, text in _R4_ERRORS.items()}},
    },
    ("/healthz", "GET"): {"summary": "Liveness: the listener, the watchdog, the pollers and publishing make progress",
                          "security": [], "responses": {
        "200": {"description": "Every part makes progress", "content": {JSON: {"schema": {
            "type": "object", "required": ["status"], "properties": {
                "status": {"const": "ok"}, "parts": {"type": "array", "items": {"type": "string"}}}}}}},
        "503": {"description": "A part is stopped or stalled (restart the process)", "content": {JSON: {"schema": {
            "type": "object", "required": ["status", "problems"], "properties": {
                "status": {"const": "unhealthy"},
                "problems": {"type": "object", "additionalProperties": {"type": "string"}}}}}}}}},
    ("/openapi.json", "GET"): {"summary": "This document", "security": [], "responses": {"200": {
        "description": "OpenAPI 3.1", "content": {JSON: {"schema": {"type": "object"}}}}}},
}


def document(routes: list[tuple[str, object, list[str]]]) -> dict:
    """The OpenAPI document of ``routes`` (the receiver's route table, ``services.core.routes.Route`` rows)."""
    paths: dict[str, dict] = {}
    for path, methods, _endpoint in routes:
        for method in methods:
            if (path, method) not in OPERATIONS:
                raise LookupError(f"route {method} {path} has no OpenAPI operation")
            paths.setdefault(path, {})[method.lower()] = OPERATIONS[(path, method)]
    stale = set(OPERATIONS) - {(p, m) for p, methods, _ in routes for m in methods}
    if stale:
        raise LookupError(f"OpenAPI operations without a route: {sorted(stale)}")
    return {
        "openapi": "3.1.0",
        "info": {"title": "Vigil ingest: FHIR notification receiver", "version": "0.1.0",
                 "description": "Receives R4 Subscriptions Backport IG notifications and classic R4 criteria-based "
                                "notifications (rest-hook) per tenant. Errors are OperationOutcomes."},
        "paths": paths,
        "components": {
            "schemas": {"OperationOutcome": OUTCOME, "Notification": NOTIFICATION, "R4Resource": R4_RESOURCE},
            "securitySchemes": {"channelToken": {
                "type": "http", "scheme": "bearer",
                "description": "The per-tenant token the Subscription carries in channel.header "
                               "(Authorization: Bearer ...)"}},
        },
    }
