"""HL7 v2 data types to FHIR R4 values: DTM -> dateTime/instant/date, CX -> Identifier, codes.

Timestamps without a UTC offset are read in the tenant's HL7 time zone (``hl7_timezone``
tenant setting, default ``UTC``): FHIR needs an offset whenever a time of day is given.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DTM = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d{1,4})?([+-]\d{4})?$")
DEFAULT_TIMEZONE = "UTC"
URN_SAFE = re.compile(r"[^A-Za-z0-9._-]+")

#: HL7 coding-system ids (CWE-3) to FHIR system URLs.
CODE_SYSTEMS = {
    "LN": "http://loinc.org", "SCT": "http://snomed.info/sct", "SNM": "http://snomed.info/sct",
    "I9": "http://hl7.org/fhir/sid/icd-9-cm", "I9C": "http://hl7.org/fhir/sid/icd-9-cm",
    "I10": "http://hl7.org/fhir/sid/icd-10", "UCUM": "http://unitsofmeasure.org",
    "DCM": "http://dicom.nema.org/resources/ontology/DCM",
}


def zone(name: str | None):
    try:
        return ZoneInfo(name or DEFAULT_TIMEZONE)
    except (ZoneInfoNotFoundError, ValueError):
        return timezone.utc


def _parts(value: str):
    match = DTM.match(value.strip()) if value else None
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    if (hour is not None and day is None) or (minute is not None and hour is None):
        return None
    return year, month, day, hour, minute, second, fraction, offset


def _as_datetime(parts, tz_name: str | None) -> datetime | None:
    year, month, day, hour, minute, second, fraction, offset = parts
    try:
        micro = int(round(float(fraction) * 1_000_000)) if fraction else 0
        naive = datetime(int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0),
                         int(second or 0), min(micro, 999_999))
    except ValueError:
        return None
    if offset:
        sign = 1 if offset[0] == "+" else -1
        delta = timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5]))
        if delta >= timedelta(hours=24):
            return None
        return naive.replace(tzinfo=timezone(sign * delta))
    return naive.replace(tzinfo=zone(tz_name))


def _iso(moment: datetime) -> str:
    text = moment.isoformat(timespec="milliseconds" if moment.microsecond else "seconds")
    return text.replace("+00:00", "Z") if moment.utcoffset() == timedelta(0) and moment.tzinfo is timezone.utc else text


def is_valid_dtm(value: str) -> bool:
    parts = _parts(value)
    return parts is not None and _as_datetime(parts, None) is not None


def to_datetime(value: str, tz_name: str | None = None) -> str | None:
    """FHIR dateTime at the precision sent (year, month, day, or a full time with offset)."""
    parts = _parts(value)
    if parts is None or _as_datetime(parts, tz_name) is None:
        return None
    year, month, day, hour = parts[:4]
    if hour is None:
        return "-".join(p for p in (year, month, day) if p)
    return _iso(_as_datetime(parts, tz_name))


def to_instant(value: str, tz_name: str | None = None) -> str | None:
    """FHIR instant (needs a time of day: day precision becomes midnight in the zone)."""
    parts = _parts(value)
    if parts is None or parts[2] is None:
        return None
    moment = _as_datetime(parts, tz_name)
    return _iso(moment) if moment else None


def to_date(value: str) -> str | None:
    parts = _parts(value)
    if parts is None or _as_datetime(parts, None) is None:
        return None
    return "-".join(p for p in parts[:3] if p)


def urn_part(value: str) -> str:
    """A value made safe for a URN segment (deterministic; keeps it readable)."""
    return URN_SAFE.sub("-", value.strip()).strip("-").lower() or "unknown"


def code_system(hl7_system: str) -> str | None:
    if not hl7_system:
        return None
    return CODE_SYSTEMS.get(hl7_system.upper(), f"urn:vigil:hl7:codesystem:{urn_part(hl7_system)}")


def coding(code: str, display: str = "", hl7_system: str = "") -> dict | None:
    if not code:
        return None
    out: dict = {"code": code}
    system = code_system(hl7_system)
    if system:
        out["system"] = system
    if display:
        out["display"] = display
    return out
