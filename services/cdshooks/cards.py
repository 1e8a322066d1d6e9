"""``patient-view`` cards: one card per open Vigil Task of the patient (read from cdshooks' own
read model, ``projection``: decisions written to a Task and without a clinician action yet),
labelled as AI-generated.

A tenant whose EHR takes no FHIR results (an Epic-like site: ``results`` without ``fhir`` in its
integration profile) has no Task: its cards are one per open episode instead (decisions of a
result kind that the mode let through, not suppressed, no clinician action yet), with no inbox
link; the card itself is where the clinician sees and answers the finding.

Each issued card is remembered in the tenant's Redis (``CARD_TTL_S``) with the Task (or none) and
the decision ids behind it, so the feedback endpoint can label the right decisions.
"""
from __future__ import annotations

import json
from collections import defaultdict

from services.cdshooks import projection
from services.cdshooks.projection import QUOTE_PURPOSE
from services.core import kv
from services.core.events import deterministic_id

SERVICE_ID = "irae-patient-view"
#: Feedback may arrive up to 30 days (30 * 24 * 3600 s) after a card was shown.
CARD_TTL_S = 30 * 24 * 3600
MAX_CARDS = 20
AI_LABEL = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "AIAST",
            "display": "Artificial Intelligence asserted"}
OVERRIDE_SYSTEM = "http://vigil.example/fhir/CodeSystem/override-reason"
OVERRIDE_REASONS = [("not-irae", "Not an immune-related adverse event"),
                    ("wrong-grade", "Grade is wrong"), ("already-managed", "Already known and managed"),
                    ("wrong-patient-context", "Evidence misread (negated, historical or family history)"),
                    ("other", "Other")]

SERVICE = {"hook": "patient-view", "id": SERVICE_ID, "title": "Vigil immune-related adverse event findings",
           "description": "Open AI-generated findings of immune-related adverse events for this patient, with "
                          "a link to review the evidence in the inbox.",
           "usageRequirements": "Requires a JWT signed by the tenant's registered CDS client."}

#: Decisions that become a result (the kinds writeback and hl7out deliver).
RESULT_KINDS = projection.RESULT_KINDS


def card_uuid(tenant: str, task_id: str) -> str:
    return deterministic_id(tenant, "cds-card", task_id)


async def open_findings(pools, keyring, tenant: str, patient: str, *, tasks: bool = True) -> list[dict]:
    """Per open Task (``tasks``; else per open episode of a tenant without Tasks): its decisions,
    highest grade, newest engine version, newest quote."""
    async with pools.tx(tenant, readonly=True) as conn:
        if tasks:
            rows = [dict(r) for r in await conn.fetch(projection.OPEN_SQL, patient)]
        else:
            rows = [{**dict(r), "task_id": None} for r in await conn.fetch(projection.OPEN_NO_TASK_SQL, patient)]
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        groups[row["task_id"] or f"episode:{row['card_key']}"].append(row)
    out = []
    for key, group in groups.items():
        newest = group[-1]
        quote = None
        if newest["quote"] is not None and keyring is not None:
            quote = (await keyring.decrypt(tenant, bytes(newest["quote"]), QUOTE_PURPOSE)).decode("utf-8")
        grades = [r["grade"] for r in group if r["grade"] is not None]
        out.append({"key": key, "task_id": newest["task_id"], "decisions": [r["id"] for r in group], "category": newest["category"],
                    "grade": max(grades) if grades else None, "urgent": any(r["kind"] == "urgent-task" for r in group),
                    "engine_version": newest["engine_version"], "quote": quote, "time": newest["time"]})
    out.sort(key=lambda f: (not f["urgent"], -(f["grade"] or 0), f["time"]))
    return out[:MAX_CARDS]


def card(tenant: str, finding: dict, inbox_url: str) -> dict:
    label = finding["category"].replace("-", " ")
    grade = f", grade {finding['grade']}" if finding["grade"] else ""
    detail = [f"**AI-generated** finding (Vigil, {finding['engine_version']}): possible immune-related "
              f"adverse event - {label}{grade}."]
    if finding["quote"]:
        detail.append(f"Evidence in the note: \"{finding['quote']}\"")
    detail.append("Review the evidence before acting; accept or override in the inbox.")
    indicator = "critical" if finding["urgent"] else ("warning" if (finding["grade"] or 0) >= 2 else "info")
    task = finding["task_id"]
    if task is None:
        detail[-1] = "Review the evidence before acting; accept or override this card."
    out = {"uuid": card_uuid(tenant, task or finding["key"]),
            "summary": f"[AI] Possible irAE: {label}{grade}"[:140],
            "detail": "\n\n".join(detail), "indicator": indicator,
            "source": {"label": "Vigil (AI-generated)", "topic": {
                "system": "https://vigil.health/fhir/CodeSystem/cds-topic", "code": "irae-finding",
                "display": "Immune-related adverse event finding"}},
            "overrideReasons": [{"system": OVERRIDE_SYSTEM, "code": c, "display": d} for c, d in OVERRIDE_REASONS],
            "extension": {"vigil-security-label": AI_LABEL}}
    if task is not None:
        out["links"] = [{"label": "Review the evidence in the inbox", "type": "absolute",
                         "url": f"{inbox_url}/inbox/{tenant}/tasks/{task}"}]
        out["extension"]["vigil-task"] = f"Task/{task}"
    return out


async def remember(redis, tenant: str, c: dict, finding: dict, patient: str, user: str | None) -> None:
    value = json.dumps({"task": finding["task_id"], "decisions": finding["decisions"], "patient": patient,
                        "user": user, "category": finding["category"], "grade": finding["grade"],
                        "engine_version": finding["engine_version"]})
    await redis.set(kv.key(tenant, "cds-card", c["uuid"]), value.encode(), ex=CARD_TTL_S)


async def recall(redis, tenant: str, card_id: str) -> dict | None:
    raw = await redis.get(kv.key(tenant, "cds-card", card_id[:64]))
    return json.loads(raw) if raw else None
