"""The patient index the HL7 feed keeps current (ADT, and every message with a PID).

Keyed by the patient key (a keyed hash of the first PID-3 identifier, see ``hl7.patientkey``),
so neither the broker nor this index's key column holds an identifier. The identifiers
themselves are sealed with the tenant key (purpose ``patient-index``). ``patient_id`` is the
EHR's Patient id once it is known (resolved by identifier, or written by the EHR copy).
"""
from __future__ import annotations

import asyncpg

PURPOSE = "patient-index"


async def upsert(conn: asyncpg.Connection, tenant: str, patient_key: str, identifiers_sealed: bytes, event: str,
                 patient_id: str | None = None) -> None:
    await conn.execute(
        "INSERT INTO ingest_patients (tenant, patient_key, patient_id, identifiers_sealed, last_event) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant, patient_key) DO UPDATE SET "
        "identifiers_sealed = EXCLUDED.identifiers_sealed, last_event = EXCLUDED.last_event, "
        "patient_id = coalesce(EXCLUDED.patient_id, ingest_patients.patient_id), updated_at = now()",
        tenant, patient_key, patient_id, identifiers_sealed, event)


async def patient_id(conn: asyncpg.Connection, tenant: str, patient_key: str) -> str | None:
    return await conn.fetchval("SELECT patient_id FROM ingest_patients WHERE tenant = $1 AND patient_key = $2",
                               tenant, patient_key)


async def count(conn: asyncpg.Connection, tenant: str) -> int:
    return await conn.fetchval("SELECT count(*) FROM ingest_patients WHERE tenant = $1", tenant)
