"""Per-tenant fault injection for tests and chaos runs (off by default).

Set through the admin API (never the FHIR API). Faults apply to every request under
``/fhir/<tenant>/``: an outage answers 503 with Retry-After for its whole period, latency is
added before the request runs, a share of requests fails with 500, 503 or 429 (the latter two
with Retry-After), and in dropped-write mode writes answer success and are rolled back.
``export_delay_s`` keeps every ``$export`` job in progress (202 on its status URL) for at least
that long after its kick-off: a slow Bulk Data server, for clients' polling.
``drop_notifications`` acts on the subscription delivery worker instead: due notifications are
counted as sent and never reach the endpoint (a lost notification, for catch-up tests).
"""
from __future__ import annotations

import asyncio
import math
import random
import time
from dataclasses import asdict, dataclass

from services.ehr.outcome import FhirError

ERROR_STATUSES = (500, 503, 429)
MAX_LATENCY_MS = 60_000
MAX_OUTAGE_S = 24 * 3600
MAX_EXPORT_DELAY_S = 3600


@dataclass(frozen=True)
class Faults:
    latency_ms: int = 0
    error_rate: float = 0.0
    error_status: int = 503
    retry_after_s: int = 1
    outage_until: float = 0.0  # epoch seconds; 0 = no outage
    drop_writes: bool = False
    export_delay_s: float = 0.0
    drop_notifications: bool = False  # subscription notifications count as sent but are never sent

    def as_dict(self) -> dict:
        out = asdict(self)
        out["outage_remaining_s"] = max(0.0, round(self.outage_until - time.time(), 3)) if self.outage_until else 0.0
        return out

    @property
    def active(self) -> bool:
        return bool(self.latency_ms or self.error_rate or self.drop_writes or self.export_delay_s or self.drop_notifications
                    or self.outage_until > time.time())


def from_request(body: object) -> Faults:
    """Parse the admin API body: latency_ms, error_rate, error_status, retry_after_s, outage_s, drop_writes,
    export_delay_s, drop_notifications."""
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    allowed = {"latency_ms", "error_rate", "error_status", "retry_after_s", "outage_s", "drop_writes",
               "export_delay_s", "drop_notifications"}
    unknown = set(body) - allowed
    if unknown:
        raise ValueError(f"unknown fault settings {sorted(unknown)}; allowed: {sorted(allowed)}")

    def number(name: str, default, low, high, kind=float):
        value = body.get(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise ValueError(f"{name} must be a number between {low} and {high}")
        return kind(value)

    status = body.get("error_status", 503)
    if status not in ERROR_STATUSES:
        raise ValueError(f"error_status must be one of {ERROR_STATUSES}")
    drop, lost = body.get("drop_writes", False), body.get("drop_notifications", False)
    if not isinstance(drop, bool):
        raise ValueError("drop_writes must be true or false")
    if not isinstance(lost, bool):
        raise ValueError("drop_notifications must be true or false")
    outage = number("outage_s", 0, 0, MAX_OUTAGE_S)
    return Faults(latency_ms=number("latency_ms", 0, 0, MAX_LATENCY_MS, int),
                  error_rate=number("error_rate", 0.0, 0.0, 1.0), error_status=status,
                  retry_after_s=number("retry_after_s", 1, 0, 3600, int),
                  outage_until=time.time() + outage if outage else 0.0, drop_writes=drop,
                  export_delay_s=number("export_delay_s", 0, 0, MAX_EXPORT_DELAY_S), drop_notifications=lost)


def from_stored(data: dict) -> Faults:
    fields = Faults.__dataclass_fields__
    return Faults(**{k: v for k, v in (data or {}).items() if k in fields})


async def apply(faults: Faults) -> None:
    """Run the request-level faults; raises a FhirError when this request must fail."""
    remaining = faults.outage_until - time.time()
    if remaining > 0:
        raise FhirError(503, "The EHR is unavailable (outage)", "transient",
                        headers={"Retry-After": str(max(1, math.ceil(remaining)))})
    if faults.latency_ms:
        await asyncio.sleep(faults.latency_ms / 1000)
    if faults.error_rate and random.random() < faults.error_rate:
        status = faults.error_status
        headers = {"Retry-After": str(faults.retry_after_s)} if status in (429, 503) else {}
        code = "throttled" if status == 429 else ("transient" if status == 503 else "exception")
        raise FhirError(status, f"Injected failure (HTTP {status})", code, headers=headers)
