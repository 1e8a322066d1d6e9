"""The per-tenant summary, computed from real data only: the decision ledger (decisions, writes,
clinician actions), the tenant's EHR (Tasks and Appointments of the run's patients), the
dead-letter table, and the findings the watcher saw on the tenant's topic.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from services.commands.demo.driver import TenantRun
from services.core.decisions import DecisionLedger
from services.core.fhir import FhirClient


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


@dataclass
class TenantSummary:
    tenant: str
    mode: str
    notes: int = 0
    notes_processed: int = 0
    findings: int = 0
    decisions: int = 0
    writable: int = 0           # decisions the mode allowed to write
    written: int = 0            # decisions with read-back refs in the ledger
    tasks: int = 0              # Tasks in the EHR for the run's patients
    followups_booked: int = 0   # booked Appointments for the run's patients
    dead_letters: int = 0
    accepted: int = 0
    overridden: int = 0
    alert_seconds: list[float] = field(default_factory=list)

    @property
    def override_rate(self) -> float | None:
        acted = self.accepted + self.overridden
        return self.overridden / acted if acted else None

    @property
    def p50(self) -> float | None:
        return percentile(self.alert_seconds, 50)

    @property
    def p95(self) -> float | None:
        return percentile(self.alert_seconds, 95)


async def ledger_rows(ledger: DecisionLedger, run: TenantRun, since: datetime) -> list[dict]:
    notes = {n.id for n in run.notes}
    return [r for r in await ledger.since(run.tenant, since) if r.get("document_id") in notes]


def pending_writes(rows: list[dict]) -> list[dict]:
    """Decisions the mode lets writeback write that have no read-back refs yet."""
    return [r for r in rows if r["write"] and not r.get("suppressed") and r["kind"] != "none"
            and not r.get("written_at")]


async def dead_letter_count(admin: asyncpg.Pool, tenant: str, since: datetime) -> int:
    return await admin.fetchval("SELECT count(*) FROM vigil_dead_letters WHERE tenant = $1 AND created_at >= $2",
                                tenant, since)


async def count_in_ehr(client: FhirClient, rtype: str, patients: list[str], **params) -> int:
    total = 0
    for patient in patients:
        total += len(await client.search(rtype, {"patient": f"Patient/{patient}", **params}))
    return total


async def summarize(run: TenantRun, mode: str, seen: dict[str, int], ledger: DecisionLedger, admin: asyncpg.Pool,
                    since: datetime) -> TenantSummary:
    s = TenantSummary(run.tenant, mode, notes=len(run.notes))
    note_ids = {n.id for n in run.notes}
    s.notes_processed = sum(1 for d in seen if d in note_ids)
    s.findings = sum(n for d, n in seen.items() if d in note_ids)
    rows = await ledger_rows(ledger, run, since)
    s.decisions = len(rows)
    s.writable = sum(1 for r in rows if r["write"] and not r.get("suppressed") and r["kind"] != "none")
    created = {n.id: n.created for n in run.notes}
    for r in rows:
        if r.get("written_at"):
            s.written += 1
            s.alert_seconds.append((r["written_at"] - created[r["document_id"]]).total_seconds())
        s.accepted += r.get("clinician_action") == "accepted"
        s.overridden += r.get("clinician_action") == "overridden"
    patients = list(run.patients.values())
    s.tasks = await count_in_ehr(run.client, "Task", patients)
    s.followups_booked = await count_in_ehr(run.client, "Appointment", patients, status="booked")
    s.dead_letters = await dead_letter_count(admin, run.tenant, since)
    return s
