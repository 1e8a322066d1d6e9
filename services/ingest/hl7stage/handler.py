"""Handle one ``vigil.ingest.hl7-received`` event: the stored message becomes Vigil events.

The message type decides, through ``HANDLERS`` (the stage's one table):

- ``MDM`` and note-bearing ``ORU`` (TX / FT / ED / RP results): the note goes to Vigil's document
  store (text sealed; a note without text is kept as ``no-text`` and counted), the patient is
  resolved to the EHR's Patient id, and a ``vigil.ehr.resource-changed`` with ``source: store``
  goes to ``ehr-events`` for extraction;
- ``ORU`` results (NM, SN, ST, CWE, ...): one ``vigil.ingest.lab-result`` each on ``lab-results``;
- ``ADT``: the patient index is brought up to date;
- ``SIU``: the patient index; the appointment itself is read from the EHR by scheduling.

Every message with a PID refreshes the patient index. A message Vigil sent itself (MSH-3 ``VIGIL``:
an hl7out result the interface engine routed back to the feed) is logged in the receipt log and
used for nothing else, so a result never becomes a new note. Other message types are acknowledged,
kept on the topic and counted as unused. With the tenant setting ``hl7_copy_to_ehr`` (off by
default; for a FHIR repository that wants a copy) the message's Patient, note, Encounter or
Appointment are also written into the EHR, each write read back (a write the EHR did not keep is
retried, never lost), and the events point at the EHR's copies.

Failures follow the stage runtime: an EHR or database outage retries (retry topics, then the
dead-letter queue and replay); a message that cannot be used (no patient identifier, a patient the
EHR does not know) is a fatal error with a readable code, dead-lettered for the platform team.
"""
from __future__ import annotations

import base64
from datetime import datetime

from prometheus_client import Counter

from services.core.bus import Context
from services.core.errors import FatalError, NotFoundError, RetryableError
from services.core.events import Event
from services.core.hl7wire import VIGIL_APPLICATION
from services.ingest import events as ev
from services.ingest.hl7.datatypes import to_instant
from services.ingest.hl7.errors import Hl7Error
from services.ingest.hl7.mapping import MAPPERS, map_message
from services.ingest.hl7.mapping.common import facility_of, identifier_system
from services.ingest.hl7.mapping.documents import DOCUMENT_TYPES, NOTE_TYPE_FALLBACK, TEXT_TYPES, doc_status
from services.ingest.hl7.parse import Message, field_value, parse
from services.ingest.hl7.validate import check_patient
from services.ingest.hl7stage import labs, patients
from services.ingest.hl7stage.content import is_note, note_content
from services.ingest.hl7stage.deps import Hl7Deps
from services.ingest.mllp.pipeline import RAW_PURPOSE
from services.ingest.store import documents, hl7_log

STAGE = "hl7"
COPY_SETTING = "hl7_copy_to_ehr"
TIMEZONE_SETTING = "hl7_timezone"

USED = Counter("vigil_hl7_messages_used_total", "HL7 messages the hl7 stage turned into events, by use",
               ("tenant", "use"))
REUSED = Counter("vigil_ingest_hl7_control_id_reused_total",
                 "Messages whose MSH-10 an earlier message with other content used", ("tenant",))
NO_TEXT = Counter("vigil_hl7_notes_without_text_total", "Notes kept without readable text (PDF, image, reference)",
                  ("tenant",))


def _fatal(exc: Hl7Error) -> FatalError:
    return FatalError(str(exc), code=f"hl7_{exc.code}")


class Hl7Stage:
    def __init__(self, deps: Hl7Deps):
        self.deps = deps

    async def __call__(self, event: Event, ctx: Context) -> None:
        data = event.data
        try:
            raw = await self.deps.keyring.decrypt(ctx.tenant, base64.b64decode(data["sealed"]), RAW_PURPOSE)
            msg = parse(raw)
        except Hl7Error as exc:
            raise _fatal(exc) from None
        tenant = self.deps.tenant(ctx.tenant)
        await self._receipt(ctx, msg, data)
        if msg.header.sending_application.upper() == VIGIL_APPLICATION:  # our own result, echoed back
            USED.labels(ctx.tenant, "own-result").inc()
            ctx.log.info("hl7.own_result", kind=msg.header.kind[:20])
            return
        key = self.deps.keys.of_message(ctx.tenant, msg)
        if key is not None:
            await patients.remember(self.deps.pools, self.deps.keyring, ctx.tenant, key, msg)
        handler = HANDLERS.get(msg.header.message_type.upper())
        if handler is None:
            USED.labels(ctx.tenant, "unused").inc()
            ctx.log.info("hl7.unused", kind=msg.header.kind[:20])
            return
        await handler(self, ctx, tenant, msg, key, data)

    # -- per message type ----------------------------------------------------------------------
    async def results(self, ctx: Context, tenant, msg: Message, key: str | None, data: dict) -> None:
        found = labs.lab_results(msg, tenant.setting(TIMEZONE_SETTING))
        if found:
            if key is None:
                raise FatalError("lab results without a patient identifier (PID-3)", code="hl7_no_patient")
            for lab in found:
                out = await labs.lab_event_data(self.deps.keyring, ctx.tenant, key, data["facility"], data["controlId"],
                                                lab)
                ctx.emit(labs.LAB_RESULTS, ctx.child(labs.LAB_RESULT, out, key=key))
            USED.labels(ctx.tenant, "lab-result").inc(len(found))
        if is_note(msg):
            await self.document(ctx, tenant, msg, key, data)

    async def document(self, ctx: Context, tenant, msg: Message, key: str | None, data: dict) -> None:
        try:
            check_patient(msg)
        except Hl7Error as exc:
            raise _fatal(exc) from None
        content = note_content(msg)
        # The copy is the FHIR note mapping, which carries TX / FT text (decoded ED text stays in the store).
        copy = bool(tenant.setting(COPY_SETTING)) and any(
            field_value(s, 2).upper() in TEXT_TYPES for s in msg.segments("OBX"))
        ehr = await self.deps.ehr(ctx.tenant)
        written = await self._copy(ctx, tenant, msg) if copy else []
        patient_id = next((r["id"] for r, _ in written if r.get("resourceType") == "Patient"), None)
        if patient_id is None:
            patient_id = await patients.known_id(self.deps.pools, ctx.tenant, key) \
                or await patients.resolve(ehr, msg, tenant.setting(patients.SYSTEM_SETTING))
            await patients.remember(self.deps.pools, self.deps.keyring, ctx.tenant, key, msg, patient_id)
        stored = await self._store(ctx, tenant, msg, key, data, content, patient_id)
        if not content.has_text:
            NO_TEXT.labels(ctx.tenant).inc()
            ctx.log.info("hl7.note_without_text", document_id=stored.id, version=stored.version,
                         content_types=list(content.content_types))
            return
        if written:
            self._emit_written(ctx, written)
        else:
            ref = ev.Ref("DocumentReference", stored.id, str(stored.version), ev.now_iso(), patient_id)
            out = ev.resource_changed(ctx.tenant, ref, action="create" if stored.version == 1 else "update",
                                      origin="hl7")
            out.data["source"] = "store"
            ctx.emit(ev.EHR_EVENTS, out)
        USED.labels(ctx.tenant, "note").inc()

    async def encounter(self, ctx: Context, tenant, msg: Message, key: str | None, data: dict) -> None:
        if tenant.setting(COPY_SETTING) and msg.header.kind.upper() in MAPPERS:
            self._emit_written(ctx, await self._copy(ctx, tenant, msg))
            USED.labels(ctx.tenant, "copied").inc()
        else:
            USED.labels(ctx.tenant, "patient-index").inc()

    # -- helpers -------------------------------------------------------------------------------
    async def _receipt(self, ctx: Context, msg: Message, data: dict) -> None:
        """The receipt log row. A message seen before (a resend produced again, a replay) is handled
        again all the same: every step below is idempotent, so it ends as the same note."""
        async with self.deps.pools.tx(ctx.tenant) as conn:
            claim = await hl7_log.claim_message(conn, ctx.tenant, data["facility"], data["controlId"],
                                                data["kind"], data["bodySha256"])
        if not claim.new:
            ctx.log.info("hl7.seen_before", control_id=data["controlId"])
        elif claim.reused_control_id:
            REUSED.labels(ctx.tenant).inc()
            ctx.log.warning("hl7.control_id_reused", control_id=data["controlId"], kind=data["kind"])

    async def _store(self, ctx, tenant, msg: Message, key: str | None, data: dict, content, patient_id: str):
        facility = facility_of(msg)
        number = msg.get("TXA", 12, comp=1)
        system, value = (identifier_system(facility, "document"), number) if number else \
            (identifier_system(facility, "message"), msg.header.control_id)
        tz = tenant.setting(TIMEZONE_SETTING)
        when = next((t for t in (to_instant(msg.get("TXA", 6), tz), to_instant(msg.get("TXA", 4), tz),
                                 to_instant(msg.get("OBR", 7), tz), to_instant(msg.header.timestamp, tz)) if t), None)
        txa_type = msg.get("TXA", 2).upper()
        code, display = DOCUMENT_TYPES.get(txa_type, NOTE_TYPE_FALLBACK) if txa_type else NOTE_TYPE_FALLBACK
        sealed = (await self.deps.keyring.encrypt(ctx.tenant, content.text.encode("utf-8"), documents.TEXT_PURPOSE)
                  if content.has_text else None)
        async with self.deps.pools.tx(ctx.tenant) as conn:
            return await documents.put(
                conn, ctx.tenant, system=system, value=value, facility=facility, control_id=msg.header.control_id,
                patient_key=key or "", patient_id=patient_id,
                note_time=datetime.fromisoformat(when) if when else None, note_type=code, note_type_display=display,
                doc_status=doc_status(msg), status="text" if content.has_text else "no-text",
                content_types=list(content.content_types), text_sealed=sealed, body_sha256=data["bodySha256"])

    async def _copy(self, ctx, tenant, msg: Message) -> list[tuple[dict, str]]:
        """Write the message's resources into the EHR and read each one back."""
        try:
            mapping = map_message(msg, tenant.setting(TIMEZONE_SETTING))
        except Hl7Error as exc:
            raise _fatal(exc) from None
        ehr = await self.deps.ehr(ctx.tenant)
        written = await ehr.write(ctx.tenant, mapping)
        for resource, _ in written:
            ref = ev.ref_of(resource)
            try:
                await ehr.vread(ref.resource_type, ref.id, ref.version_id)
            except NotFoundError:
                raise RetryableError("the EHR did not keep a copy it acknowledged", code="ehr_write_lost") from None
        return written

    @staticmethod
    def _emit_written(ctx: Context, written: list[tuple[dict, str]]) -> None:
        for resource, action in written:
            if resource.get("resourceType") in ev.PUBLISHED_TYPES:
                ctx.emit(ev.routes(resource["resourceType"]),
                         ev.resource_changed(ctx.tenant, ev.ref_of(resource), action=action, origin="hl7"))


#: message type (MSH-9.1) -> what the stage does with it. Every used type is listed here.
HANDLERS = {
    "MDM": Hl7Stage.document,
    "ORU": Hl7Stage.results,
    "ADT": Hl7Stage.encounter,
    "SIU": Hl7Stage.encounter,
}
