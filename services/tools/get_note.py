"""GetNote: one exact version of a note, its text decoded, minimum fields.

``source`` says where the note lives: ``ehr`` (the default) reads the DocumentReference version
from the tenant's EHR (vread); ``store`` reads Vigil's document store (notes from HL7 feeds).
Both answer with the same fields and the same tenant checks (the caller's credential names the
tenant; the store is read through that tenant's role).
"""
from __future__ import annotations

import base64
import binascii

from services.core.errors import ConflictError, ValidationError, VigilError
from services.core.grpc.auth import current_caller
from services.core.logging import get_logger
from services.core.tenantdir import TenantDirectory
from services.tools.clients import TenantFhir, check_id, ehr_refused
from services.tools.document_store import DocumentStore
from vigil.v1 import tools_pb2

log = get_logger("vigil.tools.get_note")


def _charset(content_type: str) -> str:
    for part in content_type.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset" and value:
            return value.strip('"')
    return "utf-8"


async def note_text(client, resource: dict) -> str:
    """The text of the first text/plain attachment (inline data, or a Binary it points to)."""
    for content in resource.get("content") or ():
        attachment = content.get("attachment") or {}
        content_type = (attachment.get("contentType") or "").lower()
        if not content_type.startswith("text/plain"):
            continue
        data = attachment.get("data")
        if data is None and (attachment.get("url") or "").startswith("Binary/"):
            binary = await client.read("Binary", attachment["url"].split("/", 1)[1])
            data = binary.get("data")
        if data is None:
            continue
        try:
            return base64.b64decode(data, validate=True).decode(_charset(content_type))
        except (binascii.Error, ValueError, LookupError):
            raise ConflictError("the note attachment cannot be decoded", code="undecodable_attachment") from None
    raise ConflictError("the DocumentReference has no text/plain attachment", code="no_text_attachment")


def _reference_id(reference: str | None, rtype: str) -> str:
    prefix = f"{rtype}/"
    return reference[len(prefix):] if reference and reference.startswith(prefix) else ""


SOURCES = ("ehr", "store")


class GetNote:
    def __init__(self, tenants: TenantDirectory, fhir: TenantFhir, store: DocumentStore):
        self.tenants = tenants
        self.fhir = fhir
        self.store = store

    async def __call__(self, request: tools_pb2.GetNoteRequest, context) -> tools_pb2.Note:
        tenant = self.tenants.get(current_caller().tenant)
        document_id = check_id("document_id", request.document_id)
        version = check_id("version", request.version)
        source = request.source or "ehr"
        if source not in SOURCES:
            raise ValidationError(f"source must be one of {', '.join(SOURCES)}", code="bad_source")
        if source == "store":
            return await self._from_store(tenant, document_id, version)
        client = await self.fhir.client(tenant)
        try:
            resource = await client.vread("DocumentReference", document_id, version)
            text = await note_text(client, resource)
        except VigilError as exc:
            raise ehr_refused(exc) from None
        coding = ((resource.get("type") or {}).get("coding") or [{}])[0]
        log.info("tools.note_read", tenant=tenant.id, document_id=document_id, version=version, chars=len(text))
        return tools_pb2.Note(
            document_id=document_id, version=str((resource.get("meta") or {}).get("versionId") or version),
            text=text, note_time=resource.get("date") or "",
            patient_id=_reference_id((resource.get("subject") or {}).get("reference"), "Patient"),
            note_type=coding.get("code") or (resource.get("type") or {}).get("text") or "",
            note_type_display=coding.get("display") or (resource.get("type") or {}).get("text") or "", source="ehr")

    async def _from_store(self, tenant, document_id: str, version: str) -> tools_pb2.Note:
        if not version.isdigit() or len(version) > 9:
            raise ValidationError("version of a stored note is a positive whole number", code="bad_version")
        note = await self.store.read(tenant.id, document_id, int(version))
        log.info("tools.note_read", tenant=tenant.id, document_id=document_id, version=version, chars=len(note.text),
                 source="store")
        return tools_pb2.Note(document_id=note.id, version=str(note.version), text=note.text, note_time=note.note_time,
                              patient_id=note.patient_id, note_type=note.note_type,
                              note_type_display=note.note_type_display, source="store",
                              identifier_system=note.identifier_system, identifier_value=note.identifier_value)
