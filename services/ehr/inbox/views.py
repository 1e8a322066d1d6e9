"""What the inbox pages show, read from one tenant's store: practitioners, open Tasks, and a
Task with its patient, finding, grade, AI label, version and the note with evidence spans."""
from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field

from services.ehr import search, values
from services.ehr.inbox import AI_SECURITY_CODE, AI_SECURITY_SYSTEM, INPUT_SYSTEM
from services.ehr.outcome import FhirError
from services.ehr.storage import Tx

OPEN_STATUSES = ("requested", "received", "accepted", "ready", "in-progress", "on-hold")
#: Most urgent first: FHIR request priority codes ranked.
PRIORITY_RANK = {"stat": 0, "asap": 1, "urgent": 2, "routine": 3}
LIST_LIMIT = 200


def person_name(resource: dict | None) -> str:
    for name in (resource or {}).get("name") or []:
        if name.get("text"):
            return name["text"]
        parts = [*(name.get("prefix") or []), *(name.get("given") or []), name.get("family") or ""]
        text = " ".join(p for p in parts if p).strip()
        if text:
            return text
    return "(no name)"


def inputs(task: dict, code: str) -> list:
    out = []
    for item in task.get("input") or []:
        codings = ((item.get("type") or {}).get("coding")) or []
        if any(c.get("system") == INPUT_SYSTEM and c.get("code") == code for c in codings):
            out.append(next((v for k, v in item.items() if k.startswith("value")), None))
    return out


def concept_text(concept: dict | None) -> str | None:
    if not isinstance(concept, dict):
        return None
    if concept.get("text"):
        return concept["text"]
    for c in concept.get("coding") or []:
        if c.get("display") or c.get("code"):
            return c.get("display") or c.get("code")
    return None


def is_ai(resource: dict) -> bool:
    return any(s.get("system") == AI_SECURITY_SYSTEM and s.get("code") == AI_SECURITY_CODE
               for s in (resource.get("meta") or {}).get("security") or [])


def finding_of(task: dict) -> str:
    found = inputs(task, "finding")
    return concept_text(found[0]) if found else (concept_text(task.get("code")) or task.get("description")
                                                  or "(no finding)")


def grade_of(task: dict) -> int | None:
    grades = [g for g in inputs(task, "grade") if isinstance(g, int) and not isinstance(g, bool)]
    return grades[0] if grades else None


@dataclass
class TaskRow:
    id: str
    priority: str
    authored: str
    finding: str
    grade: int | None
    patient: str
    ai: bool


async def _read(tx: Tx, reference: str | None) -> dict | None:
    """Read ``Type/id`` or ``Type/id/_history/v`` in this tenant; None when absent."""
    if not reference or "/" not in reference:
        return None
    parts = reference.split("/")
    try:
        version = values.version(parts[-1]) if len(parts) >= 4 and parts[-2] == "_history" else None
        if version is not None:
            return (await tx.vread(parts[-4], parts[-3], version)).content
        return (await tx.read(parts[-2], parts[-1])).content
    except FhirError:
        return None


async def open_tasks(tx: Tx, practitioner: str) -> list[TaskRow]:
    q = search.parse("Task", [("owner", f"Practitioner/{practitioner}"), ("status", ",".join(OPEN_STATUSES))])
    _, rows = await search.run(tx, q, limit=LIST_LIMIT)
    out = []
    for r in rows:
        task = r.content
        patient = await _read(tx, (task.get("for") or {}).get("reference"))
        out.append(TaskRow(r.id, task.get("priority") or "routine",
                           task.get("authoredOn") or task["meta"]["lastUpdated"], finding_of(task), grade_of(task),
                           person_name(patient) if patient else "(unknown patient)", is_ai(task)))
    out.sort(key=lambda t: t.authored, reverse=True)  # newest first within a priority
    out.sort(key=lambda t: PRIORITY_RANK.get(t.priority, len(PRIORITY_RANK)))
    return out


def note_text(document: dict | None) -> str | None:
    for content in (document or {}).get("content") or []:
        att = content.get("attachment") or {}
        if str(att.get("contentType", "")).startswith("text/") and att.get("data"):
            try:
                return base64.b64decode(att["data"], validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return None
    return None


def spans(task: dict) -> list[tuple[int, int, str]]:
    starts, ends, quotes = inputs(task, "evidence-start"), inputs(task, "evidence-end"), inputs(task, "evidence-quote")
    return [(s, e, q) for s, e, q in zip(starts, ends, quotes)
            if isinstance(s, int) and isinstance(e, int) and isinstance(q, str)]


def segments(text: str, found: list[tuple[int, int, str]]) -> tuple[list[tuple[str, bool]], int]:
    """The note cut into (text, highlighted) pieces; and how many spans did not match the text."""
    good = sorted((s, e) for s, e, q in found if 0 <= s < e <= len(text) and text[s:e] == q)
    out, pos, bad = [], 0, len(found) - len(good)
    for s, e in good:
        if s < pos:  # overlapping spans: the later one is merged into the earlier highlight
            s = pos
            if s >= e:
                continue
        out.append((text[pos:s], False))
        out.append((text[s:e], True))
        pos = e
    out.append((text[pos:], False))
    return [seg for seg in out if seg[0]], bad


@dataclass
class TaskView:
    task: dict
    patient: str
    birth_date: str | None
    finding: str
    grade: int | None
    ai: bool
    version: str | None
    note_segments: list[tuple[str, bool]] = field(default_factory=list)
    unmatched_spans: int = 0
    note_missing: bool = False

    @property
    def open(self) -> bool:
        return self.task.get("status") in OPEN_STATUSES


async def _provenances(tx: Tx, task_id: str) -> list[dict]:
    """Provenance resources whose target is the Task, versioned (``Task/x/_history/n``) or not."""
    ref = json.dumps(f"Task/{task_id}")
    pattern = json.dumps("^Task/" + re.escape(task_id) + "/_history/[0-9]+$")
    rows = await tx.conn.fetch(
        "SELECT content FROM ehr_resources WHERE tenant=$1 AND type='Provenance' AND NOT deleted "
        "AND content @? $2::jsonpath ORDER BY last_updated DESC LIMIT 5",
        tx.tenant, f"$.target.reference ? (@ == {ref} || @ like_regex {pattern})")
    return [r["content"] for r in rows]


async def _version(tx: Tx, task_id: str, task: dict) -> str | None:
    for prov in await _provenances(tx, task_id):
        for agent in prov.get("agent") or []:
            ref = (agent.get("who") or {}).get("reference", "")
            if ref.startswith("Device/"):
                device = await _read(tx, ref)
                versions = [v.get("value") for v in (device or {}).get("version") or [] if v.get("value")]
                names = [n.get("name") for n in (device or {}).get("deviceName") or [] if n.get("name")]
                if versions:
                    return " ".join([*names[:1], versions[0]])
    fallback = [v for v in inputs(task, "model-version") if isinstance(v, str)]
    return fallback[0] if fallback else None


async def task_view(tx: Tx, task_id: str) -> TaskView:
    task = (await tx.read("Task", task_id)).content
    patient = await _read(tx, (task.get("for") or {}).get("reference"))
    sources = [v.get("reference") for v in inputs(task, "source-note") if isinstance(v, dict)]
    if not sources and str((task.get("focus") or {}).get("reference", "")).startswith("DocumentReference/"):
        sources = [task["focus"]["reference"]]
    text = note_text(await _read(tx, sources[0])) if sources else None
    view = TaskView(task, person_name(patient) if patient else "(unknown patient)",
                    (patient or {}).get("birthDate"), finding_of(task), grade_of(task), is_ai(task),
                    await _version(tx, task_id, task))
    if text is None:
        view.note_missing = True
    else:
        view.note_segments, view.unmatched_spans = segments(text, spans(task))
    return view
