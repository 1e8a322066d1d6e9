"""Who a message is about: Vigil's patient index, and the EHR's Patient id by identifier.

Every message with a PID refreshes the index row of its patient key (identifiers sealed). A note
needs the EHR's Patient id (results go to that patient's chart): the index answers when it knows
it; otherwise the EHR is searched by identifier, a read every EHR family offers
(``Patient?identifier=system|value``: Epic, Oracle Health, HAPI FHIR, Medplum). The tenant
setting ``hl7_patient_identifier_system`` names the system the EHR files PID-3 under (an MRN
OID, say); without it, the systems the message itself gives are tried. Exactly one match is
required: none or several is a fatal error of that message (dead-lettered, replayable once
the EHR knows the patient), never a guess.
"""
from __future__ import annotations

import json

from services.core.errors import FatalError
from services.ingest.hl7.mapping.common import patient_identifiers
from services.ingest.hl7.parse import Message
from services.ingest.store import patients as index

SYSTEM_SETTING = "hl7_patient_identifier_system"


def candidates(msg: Message, configured: str | None) -> list[tuple[str, str]]:
    identifiers = patient_identifiers(msg)
    out: list[tuple[str, str]] = []
    if configured and identifiers:
        out.append((configured, identifiers[0]["value"]))
    out += [(i["system"], i["value"]) for i in identifiers]
    seen: set = set()
    return [c for c in out if not (c in seen or seen.add(c))]


async def remember(pools, keyring, tenant: str, key: str, msg: Message, patient_id: str | None = None) -> None:
    sealed = await keyring.encrypt(tenant, json.dumps(patient_identifiers(msg)).encode("utf-8"), index.PURPOSE)
    async with pools.tx(tenant) as conn:
        await index.upsert(conn, tenant, key, sealed, msg.header.kind[:40], patient_id)


async def known_id(pools, tenant: str, key: str) -> str | None:
    async with pools.tx(tenant, readonly=True) as conn:
        return await index.patient_id(conn, tenant, key)


async def resolve(ehr, msg: Message, configured: str | None) -> str:
    """The EHR's Patient id for the message's identifiers (FatalError when not exactly one)."""
    for system, value in candidates(msg, configured):
        found = await ehr.client.search("Patient", {"identifier": f"{system}|{value}", "_count": "2"}, max_pages=1)
        ids = {r.get("id") for r in found if r.get("resourceType") == "Patient" and r.get("id")}
        if len(ids) == 1:
            return ids.pop()
        if len(ids) > 1:
            raise FatalError("several EHR patients carry the message's patient identifier",
                             code="patient_ambiguous")
    raise FatalError("the EHR has no Patient with the message's patient identifiers (PID-3)",
                     code="patient_not_in_ehr")
