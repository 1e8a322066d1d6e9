"""FHIR errors and responses: every error leaves the server as an OperationOutcome."""
from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

FHIR_JSON = "application/fhir+json; charset=utf-8"


class FhirError(Exception):
    """An error with its HTTP status and OperationOutcome issue code.

    ``diagnostics`` is returned to the caller; it may echo what the caller sent, so it is
    never logged (log ``code`` and ``status`` instead).
    """

    def __init__(self, status: int, diagnostics: str, code: str = "processing", *,
                 headers: dict[str, str] | None = None, issues: list[dict] | None = None):
        super().__init__(f"{status} {code}")
        self.status = status
        self.code = code
        self.diagnostics = diagnostics
        self.headers = headers or {}
        self.issues = issues

    def outcome(self) -> dict:
        return operation_outcome(self.issues or [issue(self.code, self.diagnostics)])


def issue(code: str, diagnostics: str, severity: str = "error", expression: str | None = None) -> dict:
    item = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        item["expression"] = [expression]
    return item


def operation_outcome(issues: list[dict]) -> dict:
    return {"resourceType": "OperationOutcome", "issue": issues}


def fhir_response(body: Any | None, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    content = b"" if body is None else json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(content=content, status_code=status, headers=headers or {},
                    media_type=FHIR_JSON if body is not None else None)


def error_response(exc: FhirError) -> Response:
    return fhir_response(exc.outcome(), exc.status, exc.headers)


# Shorthands used across the handlers.
def bad_request(msg: str, code: str = "invalid") -> FhirError:
    return FhirError(400, msg, code)


def not_found(msg: str) -> FhirError:
    return FhirError(404, msg, "not-found")


def gone(msg: str) -> FhirError:
    return FhirError(410, msg, "deleted")


def conflict(msg: str) -> FhirError:
    return FhirError(409, msg, "conflict")


def precondition_failed(msg: str) -> FhirError:
    return FhirError(412, msg, "conflict")


def unprocessable(msg: str, issues: list[dict] | None = None) -> FhirError:
    return FhirError(422, msg, "invalid", issues=issues)
