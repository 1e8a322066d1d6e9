"""OperationOutcome responses (diagnostics name paths and reasons, never submitted values)."""
from __future__ import annotations

from fastapi.responses import JSONResponse

FHIR_JSON = "application/fhir+json"


def outcome(status: int, code: str, diagnostics: str, severity: str = "error",
            headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"resourceType": "OperationOutcome",
            "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics[:300]}]}
    return JSONResponse(body, status_code=status, media_type=FHIR_JSON, headers=headers)


def accepted(summary: dict) -> JSONResponse:
    text = ", ".join(f"{k}={v}" for k, v in summary.items())
    return outcome(200, "informational", text, severity="information")
