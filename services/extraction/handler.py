"""Handle one ``vigil.ehr.resource-changed`` event: a created or updated DocumentReference
becomes exactly one ``vigil.extraction.findings`` event (possibly with no findings).

The note version named by the event is read through ``tools.GetNote`` (exact version, from the
EHR or from Vigil's document store as the event's ``source`` says), or opened from the event when
it carries the note (a batch run's, sealed: ``evidence.seal_note``), and sent
to ``inference.Extract``; both calls carry the stage's own credential for the event's tenant.
Every other resource type, and deletions, are skipped (committed and counted). The note text
never leaves this function except to inference; the event carries its sha256, not the text,
and each evidence quote sealed with the tenant data key (``services.core.evidence``).
"""
from __future__ import annotations

import hashlib
import re
from datetime import datetime

from prometheus_client import Counter

from services.core import contracts
from services.core.agentclients import AgentClients
from services.core import evidence
from services.core.bus import Context
from services.core.crypto import Keyring
from services.core.errors import FatalError, NotFoundError, RetryableError
from services.core.events import Event
from services.core.lanes import LANES, REALTIME, Lane, Pacer
from vigil.v1 import inference_pb2, tools_pb2

STAGE = "extraction"
FINDINGS_TYPE = contracts.EXTRACTION_FINDINGS
NOTE_TYPES = ("DocumentReference",)
NOTE_ACTIONS = ("create", "update")
#: A note-type code (LOINC or a local code) as the findings schema accepts it; anything else is left out.
#: Findings below this confidence are ones the engine is unsure of (review lane, not alerts); the
#: same floor as the default ``triage_min_confidence``.
ALERT_MIN_CONFIDENCE = 0.5
_NOTE_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,39}$")

SKIPPED = Counter("vigil_extraction_skipped_total", "Input events with nothing to extract", ("tenant", "reason"))
NOTES = Counter("vigil_extraction_notes_total", "Notes extracted", ("tenant", "engine"))
FINDINGS = Counter("vigil_extraction_findings_total", "Findings emitted", ("tenant", "category"))
REVIEW = Counter("vigil_extraction_review_required_total", "Notes flagged for human review", ("tenant",))
REVIEW_LANE = Counter("vigil_extraction_review_lane_total",
                      "Findings the engine is unsure of (below the alert confidence): review, not alerts",
                      ("tenant", "category"))


def _date_time(value: str) -> str | None:
    """The note time if it is a full date-time (the schema's format), else None."""
    if not value or "T" not in value:
        return None
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value


def findings_data(event: Event, note, result) -> dict:
    patient = note.patient_id or event.data.get("patient") or event.key
    if not patient:
        raise FatalError("the note names no patient", code="note_without_patient")
    document = {"id": note.document_id, "versionId": note.version or event.data["versionId"]}
    if note.source == "store":  # the EHR has no FHIR id for it: results refer to it by its source identifier
        document["source"] = "store"
        if note.identifier_system and note.identifier_value:
            document["identifier"] = {"system": note.identifier_system, "value": note.identifier_value}
    return {
        "document": document,
        "patient": patient,
        "engine": result.engine,
        "engineVersion": result.engine_version,
        "promptHash": result.prompt_hash or None,
        "noteTime": _date_time(note.note_time),
        "reviewRequired": bool(result.review_required),
        "noteSha256": hashlib.sha256(note.text.encode("utf-8")).hexdigest(),
        "noteLength": len(note.text),  # for the monitor's note-length drift (characters; not the text)
        **({"noteType": note.note_type} if _NOTE_TYPE.match(note.note_type or "") else {}),
        "findings": [{"category": f.category, "grade": f.grade if f.HasField("grade") else None,
                      "start": f.start, "end": f.end, "quote": f.quote,
                      "attribution": f.attribution if f.attribution in ("immunotherapy", "unspecified")
                      else "unspecified",
                      "confidence": min(1.0, max(0.0, f.confidence))} for f in result.findings],
    }


class Extraction:
    """``lane``: which findings stream the results go to (the batch lane's carry the run's name);
    evidence quotes leave sealed with the tenant's data key (``services.core.evidence``)."""

    def __init__(self, clients: AgentClients, keyring: Keyring, lane: Lane = LANES[REALTIME],
                 pacer: Pacer | None = None):
        self.clients, self.keyring, self.lane, self.pacer = clients, keyring, lane, pacer or Pacer()

    async def __call__(self, event: Event, ctx: Context) -> None:
        data = event.data
        if data["resourceType"] not in NOTE_TYPES:
            SKIPPED.labels(ctx.tenant, "resource_type").inc()
            return
        if data["action"] not in NOTE_ACTIONS:
            SKIPPED.labels(ctx.tenant, "action").inc()
            return
        await self.pacer.wait()  # the batch lane's budget (no limit on the real-time lane)
        carried = data.get("note")
        note = await (self._carried(ctx.tenant, data, carried) if carried else self._read(ctx.tenant, data))
        result = await self.clients.call("inference", ctx.tenant, "Extract", inference_pb2.ExtractRequest(
            document_id=note.document_id, version=note.version, text=note.text))
        out = findings_data(event, note, result)
        if data.get("run"):
            out["run"] = data["run"]
        sealed = await evidence.seal_findings(self.keyring, ctx.tenant, out)
        ctx.emit(self.lane.findings, ctx.child(FINDINGS_TYPE, sealed, key=out["patient"]))
        NOTES.labels(ctx.tenant, result.engine).inc()
        for f in out["findings"]:
            FINDINGS.labels(ctx.tenant, f["category"]).inc()
            if f["confidence"] < ALERT_MIN_CONFIDENCE:
                REVIEW_LANE.labels(ctx.tenant, f["category"]).inc()
        if out["reviewRequired"]:
            REVIEW.labels(ctx.tenant).inc()
        ctx.log.info("extraction.note_done", findings=len(out["findings"]), engine=result.engine,
                     review=out["reviewRequired"])

    async def _read(self, tenant: str, data: dict) -> tools_pb2.Note:
        """The note version named by the event, through ``tools.GetNote``."""
        source = data.get("source") or "ehr"
        try:
            return await self.clients.call("tools", tenant, "GetNote", tools_pb2.GetNoteRequest(
                document_id=data["id"], version=str(data["versionId"]), source=source))
        except NotFoundError as exc:
            if source != "store" or exc.code != "note_not_found":
                raise
            # A writer publishes a chunk's events before its transaction commits (a batch run:
            # store, publish, checkpoint, commit): the version may not be visible yet. Retried
            # (quick retries, then the retry topics); a chunk rolled back by a crash ends in the
            # DLQ once the retries are spent, and the resumed run publishes its notes again.
            raise RetryableError("the note version is not in the document store (yet)",
                                 code="note_not_visible") from None

    async def _carried(self, tenant: str, data: dict, carried: dict) -> tools_pb2.Note:
        """The note a batch run's event carries (``note``), as ``tools.GetNote`` reads it from the
        store: a text that does not open with the tenant's key is a ``DecryptionError`` (dead letter)."""
        identifier = carried.get("identifier") or {}
        return tools_pb2.Note(
            document_id=data["id"], version=str(data["versionId"]),
            text=await evidence.open_note(self.keyring, tenant, carried["textSealed"]),
            note_time=carried.get("time") or "", note_type=carried.get("type") or "",
            note_type_display=carried.get("typeDisplay") or "", source=data.get("source") or "store",
            identifier_system=identifier.get("system") or "", identifier_value=identifier.get("value") or "")
