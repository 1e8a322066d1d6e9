"""The watch list: who is polled.

``checkpoint-inhibitors`` (a FHIR server that allows a system-wide MedicationRequest search):
``MedicationRequest?status=active&code=<RxNorm ingredient codes>``, and, with ``poll_watch_text``,
a sweep of ``MedicationRequest?status=active`` matched by drug name in the order's text, display or
its Medication's code (services/core/ici.py). Epic and Oracle Health refuse a MedicationRequest
search without a patient, so their sites use ``uploaded`` (a list from a registry, an Epic patient
list / Group export, or a Bulk Data export) and the runner refuses ``checkpoint-inhibitors`` for them.

``uploaded``: a file of one entry per line, either plain text / CSV or JSON lines::

    Patient/8a7c...                 a FHIR Patient id (``Patient/`` optional)
    urn:oid:1.2.3|MRN0001           an identifier, system|value
    urn:oid:1.2.3,MRN0001           the same as two CSV columns (a header line is skipped)
    {"patient": "8a7c..."}  {"identifier": "urn:oid:1.2.3|MRN0001"}  {"system": "...", "value": "..."}

Identifiers are resolved with ``Patient?identifier=system|value``; ids are checked with a read.
An entry that matches no patient (or several) is reported by line number, never stored.
"""
from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from dataclasses import dataclass

from services.core.errors import NotFoundError, VigilError
from services.core.ici import ICI_RXNORM, RXNORM, ici_drug
from services.ingest import events as ev
from services.ingest.ehr import TenantEhr
from services.ingest.poll.bucket import TokenBucket

#: EHR families whose MedicationRequest search requires a patient: no system-wide list for them.
PATIENT_SCOPED_FAMILIES = ("epic-like", "oracle-like")
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
MAX_ENTRIES = 100_000
MAX_SEARCH_PAGES = 2000  # 2000 pages x 100 active orders = 200,000 orders per refresh


class UploadError(ValueError):
    """The uploaded file is malformed; ``problems`` lists (line, reason) without the line's content."""

    def __init__(self, problems: list[tuple[int, str]]):
        self.problems = problems
        shown = "; ".join(f"line {n}: {why}" for n, why in problems[:10])
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        super().__init__(f"{len(problems)} malformed entr{'y' if len(problems) == 1 else 'ies'}: {shown}{more}")


@dataclass(frozen=True)
class Entry:
    line: int
    patient_id: str = ""
    system: str = ""
    value: str = ""

    @property
    def kind(self) -> str:
        return "patient" if self.patient_id else "identifier"


def _entry(line: int, patient: str = "", identifier: str = "", system: str = "", value: str = "") -> Entry:
    if patient:
        pid = patient[len("Patient/"):] if patient.startswith("Patient/") else patient
        if not FHIR_ID.match(pid):
            raise ValueError("not a FHIR Patient id (1-64 of A-Z a-z 0-9 - .)")
        return Entry(line, patient_id=pid)
    if identifier:
        system, bar, value = identifier.partition("|")
        if not bar:
            raise ValueError("an identifier is system|value")
    system, value = system.strip(), value.strip()
    if not system or not value:
        raise ValueError("an identifier needs both a system and a value")
    return Entry(line, system=system, value=value)


def _json_line(line: int, text: str) -> Entry:
    try:
        obj = json.loads(text)
    except ValueError:
        raise ValueError("not a JSON object") from None
    if not isinstance(obj, dict) or not all(isinstance(v, str) for v in obj.values()):
        raise ValueError("not a JSON object of strings")
    unknown = set(obj) - {"patient", "identifier", "system", "value"}
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}: use patient, identifier, or system and value")
    return _entry(line, obj.get("patient", ""), obj.get("identifier", ""), obj.get("system", ""), obj.get("value", ""))


def _text_line(line: int, text: str) -> Entry | None:
    if "|" in text:
        return _entry(line, identifier=text)
    cells = next(csv.reader(io.StringIO(text)))
    cells = [c.strip() for c in cells]
    if line == 1 and {c.lower() for c in cells} <= {"patient", "id", "identifier", "system", "value"}:
        return None  # a header
    if len(cells) == 1:
        return _entry(line, patient=cells[0])
    if len(cells) == 2:
        return _entry(line, system=cells[0], value=cells[1])
    raise ValueError(f"{len(cells)} columns: use one (Patient id), system|value, or two (system,value)")


def parse_upload(text: str) -> list[Entry]:
    """The entries of an uploaded file; raises UploadError naming every malformed line."""
    entries, problems = [], []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip().lstrip("\ufeff")
        if not line or line.startswith("#"):
            continue
        try:
            entry = _json_line(number, line) if line.startswith("{") else _text_line(number, line)
        except ValueError as exc:
            problems.append((number, str(exc)))
            continue
        if entry is not None:
            entries.append(entry)
    if problems:
        raise UploadError(problems)
    if not entries:
        raise UploadError([(0, "the file has no entries")])
    if len(entries) > MAX_ENTRIES:
        raise UploadError([(0, f"{len(entries)} entries: at most {MAX_ENTRIES} per upload")])
    return entries


@dataclass
class Resolved:
    patient_ids: list[str]
    unresolved: list[tuple[int, str]]  # (line, "not-found" | "ambiguous")
    requests: int = 0


async def _resolve_one(ehr: TenantEhr, bucket: TokenBucket, entry: Entry) -> tuple[str | None, str]:
    await bucket.acquire()
    if entry.patient_id:
        try:
            patient = await ehr.read("Patient", entry.patient_id)
        except NotFoundError:
            return None, "not-found"
        except VigilError as exc:
            if exc.code == "http_410":  # deleted
                return None, "not-found"
            raise
        return str(patient.get("id") or entry.patient_id), ""
    bundle = await ehr.client.search_page("Patient", {"identifier": f"{entry.system}|{entry.value}", "_count": "2"})
    ids = sorted({str(e["resource"]["id"]) for e in bundle.get("entry") or []
                  if isinstance(e, dict) and isinstance(e.get("resource"), dict) and e["resource"].get("id")
                  and (e.get("search") or {}).get("mode", "match") == "match"})
    if not ids:
        return None, "not-found"
    if len(ids) > 1 or (isinstance(bundle.get("total"), int) and bundle["total"] > 1):
        return None, "ambiguous"
    return ids[0], ""


async def resolve(ehr: TenantEhr, bucket: TokenBucket, entries: list[Entry], concurrency: int = 4) -> Resolved:
    """Patient ids for the entries, at the tenant's request rate. An EHR failure other than
    "no such patient" raises (nothing is half-stored by the caller)."""
    results: dict[int, tuple[str | None, str]] = {}
    queue = list(enumerate(entries))

    async def worker() -> None:
        while queue:
            index, entry = queue.pop()
            results[index] = await _resolve_one(ehr, bucket, entry)

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(entries))))))
    ids, unresolved = [], []
    for index, entry in enumerate(entries):
        pid, reason = results[index]
        if pid:
            ids.append(pid)
        else:
            unresolved.append((entry.line, reason))
    return Resolved(sorted(set(ids)), unresolved, len(entries))


async def _orders(ehr: TenantEhr, bucket: TokenBucket, params: dict[str, str]):
    await bucket.acquire()
    bundle = await ehr.client.search_page("MedicationRequest", params)
    for _ in range(MAX_SEARCH_PAGES):
        for entry in bundle.get("entry") or []:
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(resource, dict) and resource.get("resourceType") == "MedicationRequest" \
                    and (entry.get("search") or {}).get("mode", "match") == "match":
                yield resource
        url = ehr.next_url(bundle)
        if url is None:
            return
        await bucket.acquire()
        bundle = await ehr.page_at(url)


def _patient(order: dict) -> str | None:
    return ev._patient_id(((order.get("subject") or {}) if isinstance(order.get("subject"), dict) else {})
                          .get("reference"))


async def checkpoint_inhibitor_patients(ehr: TenantEhr, bucket: TokenBucket, *, text: bool = True,
                                        page_size: int = 100) -> set[str]:
    """Patients with an active checkpoint-inhibitor MedicationRequest (system-wide searches)."""
    patients: set[str] = set()
    codes = ",".join(f"{RXNORM}|{code}" for code in ICI_RXNORM)
    async for order in _orders(ehr, bucket, {"status": "active", "code": codes, "_count": str(page_size)}):
        if ici_drug(order.get("medicationCodeableConcept")) and _patient(order):
            patients.add(_patient(order))
    if not text:
        return patients
    medications: dict[str, str] = {}  # Medication id -> generic ICI name ('' if none), read once per refresh
    async for order in _orders(ehr, bucket, {"status": "active", "_count": str(page_size)}):
        pid = _patient(order)
        if not pid or pid in patients:
            continue
        drug = ici_drug(order.get("medicationCodeableConcept"))
        reference = (order.get("medicationReference") or {}).get("reference") or ""
        if not drug and reference.startswith("Medication/"):
            mid = reference.split("/", 1)[1]
            if mid not in medications:
                await bucket.acquire()
                try:
                    medications[mid] = ici_drug((await ehr.read("Medication", mid)).get("code"))
                except NotFoundError:
                    medications[mid] = ""
            drug = medications[mid]
        if drug:
            patients.add(pid)
    return patients
