"""Vigil's document store: notes that did not come from the EHR's FHIR API (HL7 feeds now).

One row per version of a document. A document is keyed by its source identifier (TXA-12 unique
document number, else the message's MSH-10) and gets a stable id; the same content again is the
same version (a resend), other content is the next version (a correction or an amendment:
TXA-19 / OBX-11 ``C``). The text is sealed with the tenant data key (purpose ``note-text``)
before it reaches this module; a note without readable text (PDF, image, a reference pointer)
is kept with status ``no-text`` and its content types, never dropped.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.core.events import deterministic_id

TEXT_PURPOSE = "note-text"
STATUSES = ("text", "no-text")


def document_id(tenant: str, system: str, value: str) -> str:
    """A FHIR-shaped id (``[A-Za-z0-9-]``, 36 chars) that never changes for one source identifier."""
    return deterministic_id(tenant, "document-store", system, value)


@dataclass(frozen=True)
class StoredNote:
    """One version as written (``created`` false when the same content was there already)."""

    id: str
    version: int
    created: bool


@dataclass(frozen=True)
class NoteRow:
    id: str
    version: int
    identifier_system: str
    identifier_value: str
    patient_key: str
    patient_id: str | None
    note_time: datetime | None
    note_type: str
    note_type_display: str
    status: str
    content_types: list[str]
    text_sealed: bytes | None


async def put(conn: asyncpg.Connection, tenant: str, *, system: str, value: str, facility: str, control_id: str,
              patient_key: str, patient_id: str | None, note_time: datetime | None, note_type: str,
              note_type_display: str, doc_status: str | None, status: str, content_types: list[str],
              text_sealed: bytes | None, body_sha256: str) -> StoredNote:
    """Store a version unless the same content is already stored; call inside a transaction."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}")
    doc_id = document_id(tenant, system, value)
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('ingest_documents:' || $1 || ':' || $2))",
                       tenant, doc_id)
    same = await conn.fetchval("SELECT version FROM ingest_documents WHERE tenant = $1 AND id = $2 "
                               "AND body_sha256 = $3", tenant, doc_id, body_sha256)
    if same is not None:
        return StoredNote(doc_id, same, False)
    version = await conn.fetchval(
        "INSERT INTO ingest_documents (tenant, id, version, identifier_system, identifier_value, facility, "
        "control_id, patient_key, patient_id, note_time, note_type, note_type_display, doc_status, status, "
        "content_types, text_sealed, body_sha256) "
        "SELECT $1, $2, coalesce(max(version), 0) + 1, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16 "
        "FROM ingest_documents WHERE tenant = $1 AND id = $2 RETURNING version",
        tenant, doc_id, system, value, facility, control_id, patient_key, patient_id, note_time, note_type,
        note_type_display, doc_status, status, content_types, text_sealed, body_sha256)
    return StoredNote(doc_id, version, True)


async def get(conn: asyncpg.Connection, tenant: str, doc_id: str, version: int | None = None) -> NoteRow | None:
    """One version (the newest when ``version`` is None)."""
    row = await conn.fetchrow(
        "SELECT id, version, identifier_system, identifier_value, patient_key, patient_id, note_time, note_type, "
        "note_type_display, status, content_types, text_sealed FROM ingest_documents WHERE tenant = $1 AND id = $2 "
        "AND ($3::int IS NULL OR version = $3) ORDER BY version DESC LIMIT 1", tenant, doc_id, version)
    if row is None:
        return None
    return NoteRow(row["id"], row["version"], row["identifier_system"], row["identifier_value"], row["patient_key"],
                   row["patient_id"], row["note_time"], row["note_type"], row["note_type_display"], row["status"],
                   list(row["content_types"]), bytes(row["text_sealed"]) if row["text_sealed"] is not None else None)


async def counts(conn: asyncpg.Connection, tenant: str) -> dict[str, int]:
    """Stored versions by status (``text`` / ``no-text``)."""
    rows = await conn.fetch("SELECT status, count(*) AS n FROM ingest_documents WHERE tenant = $1 GROUP BY status",
                            tenant)
    return {r["status"]: r["n"] for r in rows}
