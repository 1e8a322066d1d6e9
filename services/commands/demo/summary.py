"""The per-tenant summary, computed from real data only: the decision ledger (decisions, writes,
clinician actions), the tenant's EHR (Tasks, Vigil-written resources and Appointments of the run's
patients), what the interface engine stand-in acknowledged (ORU results, by MSH-10), the cards the
CDS service returned to patient-view calls, the dead letters (the control service's
``ListDeadLetters``), and the findings the watcher saw on the tenant's topic. ``delivery_line`` says how the results reached the tenant's clinicians.

Every number counts this run only: its period (``RunPeriod``, from just before the first note to
the end of the run) and its notes bound the ledger rows, and clinician actions are counted per
inbox Task (the feedback path labels every decision of a Task, so decisions would count an action
once per decision that updated the Task).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone


from services.commands.demo.driver import TenantRun
from services.triage.ledger import DecisionLedger
from services.core.fhir import FhirClient

#: What Vigil writes about a patient into an EHR that takes FHIR results (writeback).
VIGIL_WRITTEN_TYPES = ("Task", "Observation", "DetectedIssue")
#: Decision kinds delivered as results (Task, ORU, card).
RESULT_KINDS = ("urgent-task", "routine-task", "review-task")


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
    results: tuple[str, ...] = ("fhir",)   # the tenant's results channels (integration profile)
    hl7_notes: bool = False     # its notes came as an HL7v2 feed
    oru_delivered: int | None = None   # results the interface engine acknowledged AA (hl7v2 channel)
    cds_cards: int | None = None       # cards patient-view returned for the run's patients
    ehr_vigil_resources: int = 0       # Task / Observation / DetectedIssue of the run's patients
    accepted: int = 0
    overridden: int = 0
    alert_seconds: list[float] = field(default_factory=list)

    @property
    def override_rate(self) -> float | None:
        acted = self.accepted + self.overridden
        return self.overridden / acted if acted else None

    def delivery_line(self) -> str:
        """How the results reached the clinicians, in one line."""
        notes = f"{self.notes} {'HL7 notes' if self.hl7_notes else 'notes'}"
        parts = []
        if "fhir" in self.results:
            parts.append(f"{self.tasks} Tasks in the inbox (FHIR)")
        if "hl7v2" in self.results:
            parts.append(f"{self.oru_delivered or 0} ORU results delivered to the interface engine (AA)")
        if "cds-hooks" in self.results and self.cds_cards is not None:
            parts.append(f"{self.cds_cards} CDS cards" + (" available" if "fhir" in self.results else ""))
        if "fhir" not in self.results:
            parts.append(f"{self.ehr_vigil_resources} resources written to the EHR")
        return f"{self.tenant}: {notes} -> {', '.join(parts)}"

    @property
    def p50(self) -> float | None:
        return percentile(self.alert_seconds, 50)

    @property
    def p95(self) -> float | None:
        return percentile(self.alert_seconds, 95)


@dataclass
class RunPeriod:
    """``[since, until)`` of one demo run; ``until`` is None while the run goes on."""
    since: datetime
    until: datetime | None = None

    def __contains__(self, when: datetime | None) -> bool:
        return when is not None and self.since <= when and (self.until is None or when < self.until)

    def close(self) -> None:
        self.until = datetime.now(timezone.utc)

    def options(self) -> str:
        """``--since S --until U`` to whole seconds that still cover the period (for `vigil report`)."""
        until = (self.until or datetime.now(timezone.utc)).replace(microsecond=0) + timedelta(seconds=1)
        return f"--since {self.since:%Y-%m-%dT%H:%M:%SZ} --until {until:%Y-%m-%dT%H:%M:%SZ}"


async def ledger_rows(ledger: DecisionLedger, run: TenantRun, period: RunPeriod) -> list[dict]:
    """The ledger's decisions on this run's notes, made within the run's period."""
    notes = {n.id for n in run.notes}
    return [r for r in await ledger.since(run.tenant, period.since)
            if r.get("document_id") in notes and r["time"] in period]


def task_actions(rows: list[dict], period: RunPeriod) -> dict[str, str]:
    """Inbox Task id -> the clinician's action on it, recorded within the run's period."""
    out: dict[str, str] = {}
    for r in rows:
        if r.get("task_id") and r.get("clinician_action") and r.get("action_time") in period:
            out.setdefault(r["task_id"], r["clinician_action"])
    return out


def pending_writes(rows: list[dict]) -> list[dict]:
    """Decisions the mode lets writeback write that have no read-back refs yet."""
    return [r for r in rows if r["write"] and not r.get("suppressed") and r["kind"] != "none"
            and not r.get("written_at")]


async def dead_letter_count(control, tenant: str, period: RunPeriod) -> int:
    """Events the tenant's stages dead-lettered in the period, from the control service's index
    (``ListDeadLetters``; the bus's dead letters are read through control, never by SQL)."""
    from vigil.v1 import control_pb2 as pb

    def ms(when: datetime | None, ceil: bool = False) -> int:
        return int(when.timestamp() * 1000) + int(ceil) if when else 0

    page = await control.call("ListDeadLetters", pb.ListDeadLettersRequest(
        tenant=tenant, page_size=1, filter=pb.DeadLetterFilter(status="any", since_ms=ms(period.since),
                                                               until_ms=ms(period.until, ceil=True))))
    return page.total


async def count_in_ehr(client: FhirClient, rtype: str, patients: list[str], **params) -> int:
    total = 0
    for patient in patients:
        total += len(await client.search(rtype, {"patient": f"Patient/{patient}", **params}))
    return total


def result_rows(rows: list[dict]) -> list[dict]:
    """Decisions the mode lets through as a result (whatever the channel)."""
    return [r for r in rows if r["write"] and not r.get("suppressed") and r["kind"] in RESULT_KINDS]


def oru_times(rows: list[dict], tenant: str, acknowledged: dict[str, datetime]) -> dict[str, datetime]:
    """Decision id -> when the interface engine acknowledged its result (hl7out's MSH-10)."""
    from services.hl7out.message import control_id

    out = {}
    for r in result_rows(rows):
        when = acknowledged.get(control_id(tenant, r["id"], 1))
        if when is not None:
            out[r["id"]] = when
    return out


async def summarize(run: TenantRun, mode: str, seen: dict[str, int], ledger: DecisionLedger, control,
                    period: RunPeriod, *, results: tuple[str, ...] = ("fhir",),
                    acknowledged: dict[str, datetime] | None = None, cds_cards: int | None = None) -> TenantSummary:
    s = TenantSummary(run.tenant, mode, notes=len(run.notes), results=tuple(results), hl7_notes=run.feed is not None,
                      cds_cards=cds_cards)
    note_ids = {n.id for n in run.notes}
    s.notes_processed = sum(1 for d in seen if d in note_ids)
    s.findings = sum(n for d, n in seen.items() if d in note_ids)
    rows = await ledger_rows(ledger, run, period)
    s.decisions = len(rows)
    s.writable = sum(1 for r in rows if r["write"] and not r.get("suppressed") and r["kind"] != "none")
    created = {n.id: n.created for n in run.notes}
    delivered = oru_times(rows, run.tenant, acknowledged or {}) if "hl7v2" in results else {}
    if "hl7v2" in results:
        s.oru_delivered = len(delivered)
    for r in rows:
        if r.get("written_at"):
            s.written += 1
            s.alert_seconds.append((r["written_at"] - created[r["document_id"]]).total_seconds())
        elif r["id"] in delivered and "fhir" not in results:  # time to the ORU's AA
            s.alert_seconds.append((delivered[r["id"]] - created[r["document_id"]]).total_seconds())
    actions = list(task_actions(rows, period).values())
    s.accepted, s.overridden = actions.count("accepted"), actions.count("overridden")
    patients = list(run.patients.values())
    s.tasks = await count_in_ehr(run.client, "Task", patients)
    s.ehr_vigil_resources = s.tasks + sum([await count_in_ehr(run.client, rtype, patients)
                                           for rtype in VIGIL_WRITTEN_TYPES if rtype != "Task"])
    s.followups_booked = await count_in_ehr(run.client, "Appointment", patients, status="booked")
    s.dead_letters = await dead_letter_count(control, run.tenant, period)
    return s
