"""Notes kept in Vigil's document store (written by ingest's hl7 stage; read here, never written).

The row is read through the calling tenant's own pool (forced row-level security: another
tenant's document does not exist for this role) and the text is opened with the tenant's data key.
"""
from __future__ import annotations

from dataclasses import dataclass

from services.core.crypto import Keyring
from services.core.errors import ConflictError, NotFoundError
from services.core.tenantdb import TenantPools

#: The writer seals note text under this purpose (``services.ingest.store.documents.TEXT_PURPOSE``).
TEXT_PURPOSE = "note-text"


@dataclass(frozen=True)
class StoreNote:
    id: str
    version: int
    text: str
    note_time: str
    patient_id: str
    note_type: str
    note_type_display: str
    identifier_system: str
    identifier_value: str


class DocumentStore:
    def __init__(self, pools: TenantPools, keyring: Keyring | None = None):
        self.pools = pools
        self.keyring = keyring or Keyring(pools)

    async def read(self, tenant: str, doc_id: str, version: int) -> StoreNote:
        async with self.pools.tx(tenant, readonly=True) as conn:
            row = await conn.fetchrow(
                "SELECT id, version, identifier_system, identifier_value, patient_id, note_time, note_type, "
                "note_type_display, status, text_sealed FROM ingest_documents WHERE tenant = $1 AND id = $2 "
                "AND version = $3", tenant, doc_id, version)
        if row is None:
            raise NotFoundError("no such note version in the document store", code="note_not_found")
        if row["status"] != "text" or row["text_sealed"] is None:
            raise ConflictError("the stored note has no readable text", code="no_text_attachment")
        text = (await self.keyring.decrypt(tenant, bytes(row["text_sealed"]), TEXT_PURPOSE)).decode("utf-8")
        when = row["note_time"]
        return StoreNote(row["id"], row["version"], text, when.isoformat() if when else "", row["patient_id"] or "",
                         row["note_type"], row["note_type_display"], row["identifier_system"],
                         row["identifier_value"])
