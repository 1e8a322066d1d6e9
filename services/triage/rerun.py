"""Re-run past decisions with the current engine and report what would change.

For every triage decision recorded since a date, the exact note version it was made from is
read again through ``tools.GetNote`` (its sha256 is compared with the recorded one) and sent to
``inference.Extract`` with the tenant's current engine; the triage policy is applied to the new
findings and compared per category with the recorded decision (the finding-level grade and the
kind before episode effects). Nothing is written or emitted.
"""
from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from services.core.agentclients import AgentClients
from services.triage.ledger import DecisionLedger
from services.triage.handler import AGENT
from services.triage.policy import REVIEW_CATEGORY, TriageSettings, kind_for, plan
from vigil.v1 import inference_pb2, tools_pb2


@dataclass
class Change:
    decision_id: str | None
    document: str
    status: str                  # unchanged | changed | gone | new
    old: dict | None             # {category, grade, kind, engineVersion}
    new: dict | None
    note_changed: bool = False


@dataclass
class Report:
    changes: list[Change] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)

    @property
    def summary(self) -> dict:
        counts = Counter(c.status for c in self.changes)
        return {s: counts.get(s, 0) for s in ("unchanged", "changed", "gone", "new")} | {
            "decisions": sum(1 for c in self.changes if c.decision_id), "errors": len(self.errors)}


def _old(row: dict) -> dict:
    grade = (row["output"].get("finding") or {}).get("grade")
    kind = row["kind"] if row["kind"] in ("none", "review-task") else kind_for(grade)
    return {"category": row["category"], "grade": grade, "kind": kind, "engineVersion": row["engine_version"]}


async def rerun(ledger: DecisionLedger, clients: AgentClients, tenant: str, since: datetime,
                settings: TriageSettings, engine: str = "") -> Report:
    report = Report()
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in await ledger.since(tenant, since):
        if row["agent"] == AGENT and row["document_id"]:
            groups[(row["document_id"], row["document_version"] or "")].append(row)
    for (document, version), rows in sorted(groups.items()):
        ref = f"DocumentReference/{document}/_history/{version}"
        try:
            note = await clients.call("tools", tenant, "GetNote",
                                      tools_pb2.GetNoteRequest(document_id=document, version=version))
            result = await clients.call("inference", tenant, "Extract", inference_pb2.ExtractRequest(
                document_id=document, version=version, text=note.text, engine=engine))
        except Exception as exc:  # reported per document; the rest of the run continues
            report.errors.append({"document": ref, "error": type(exc).__name__, "code": getattr(exc, "code", "")})
            continue
        sha = hashlib.sha256(note.text.encode("utf-8")).hexdigest()
        changed_note = any(r["note_sha256"] and r["note_sha256"] != sha for r in rows)
        data = {"reviewRequired": result.review_required, "findings": [
            {"category": f.category, "grade": f.grade if f.HasField("grade") else None, "start": f.start,
             "end": f.end, "quote": f.quote, "confidence": f.confidence} for f in result.findings]}
        plans = {p.category: p for p in plan(data, settings)}
        seen = set()
        for row in rows:
            old = _old(row)
            p = plans.get(row["category"])
            seen.add(row["category"])
            if p is None:
                report.changes.append(Change(row["id"], ref, "gone", old, None, changed_note))
                continue
            new = {"category": p.category, "grade": p.grade, "kind": p.kind, "engineVersion": result.engine_version}
            same = (old["grade"], old["kind"]) == (new["grade"], new["kind"])
            report.changes.append(Change(row["id"], ref, "unchanged" if same else "changed", old, new, changed_note))
        for category, p in sorted(plans.items()):
            if category not in seen and category != REVIEW_CATEGORY:
                report.changes.append(Change(None, ref, "new", None, {
                    "category": category, "grade": p.grade, "kind": p.kind,
                    "engineVersion": result.engine_version}, changed_note))
    return report
