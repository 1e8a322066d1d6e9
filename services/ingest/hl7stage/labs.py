"""Laboratory results of an ORU^R01: one ``vigil.ingest.lab-result`` per coded or numeric OBX.

The event carries the patient key, the message it came from, the OBX index, value type, time and
status in the clear, and the result itself (code, value, unit, reference range, abnormal flags)
sealed with the tenant data key (purpose ``lab-result``): a value tied to a patient is PHI.
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from services.ingest.hl7.datatypes import to_instant
from services.ingest.hl7.parse import Message, field_value, repetitions
from services.core import contracts

LAB_RESULT = contracts.LAB_RESULT
LAB_RESULTS = contracts.LAB_RESULTS
PURPOSE = "lab-result"
RESULT_TYPES = ("NM", "SN", "ST", "CWE", "CE", "CNE", "CX", "TS", "DTM", "DT", "TM", "NA")


@dataclass(frozen=True)
class LabResult:
    index: int
    value_type: str
    observed_at: str | None
    status: str | None
    result: dict  # sealed before it leaves the stage


def _value(segment, value_type: str) -> object:
    """OBX-5 as JSON: numbers for NM, the comparator and numbers for SN, code/text for coded values."""
    reps = max(repetitions(segment, 5), 1)
    values = []
    for rep in range(1, reps + 1):
        if value_type == "NM":
            text = field_value(segment, 5, rep)
            try:
                values.append(float(text) if text else None)
            except ValueError:
                values.append(text)
        elif value_type == "SN":
            values.append({"comparator": field_value(segment, 5, rep, 1) or None,
                           "num1": field_value(segment, 5, rep, 2) or None,
                           "separator": field_value(segment, 5, rep, 3) or None,
                           "num2": field_value(segment, 5, rep, 4) or None})
        elif value_type in ("CWE", "CE", "CNE"):
            values.append({"code": field_value(segment, 5, rep, 1) or None,
                           "display": field_value(segment, 5, rep, 2) or None,
                           "system": field_value(segment, 5, rep, 3) or None})
        else:
            values.append(field_value(segment, 5, rep) or None)
    return values[0] if len(values) == 1 else values


def lab_results(msg: Message, tz: str | None) -> list[LabResult]:
    out = []
    for position, segment in enumerate(msg.segments("OBX"), start=1):
        value_type = field_value(segment, 2).upper()
        if value_type not in RESULT_TYPES:
            continue
        observed = to_instant(field_value(segment, 14), tz) or to_instant(msg.get("OBR", 7), tz)
        result = {"code": field_value(segment, 3, 1, 1) or None, "display": field_value(segment, 3, 1, 2) or None,
                  "system": field_value(segment, 3, 1, 3) or None, "subId": field_value(segment, 4) or None,
                  "value": _value(segment, value_type), "unit": field_value(segment, 6, 1, 1) or None,
                  "referenceRange": field_value(segment, 7) or None,
                  "abnormalFlags": field_value(segment, 8) or None}
        out.append(LabResult(position, value_type, observed, field_value(segment, 11).upper()[:2] or None, result))
    return out


async def lab_event_data(keyring, tenant: str, patient_key: str, facility: str, control_id: str,
                         lab: LabResult) -> dict:
    sealed = await keyring.encrypt(tenant, json.dumps(lab.result, sort_keys=True).encode("utf-8"), PURPOSE)
    return {"patient": patient_key, "message": {"facility": facility, "controlId": control_id}, "index": lab.index,
            "valueType": lab.value_type, "observedAt": lab.observed_at, "resultStatus": lab.status,
            "sealed": base64.b64encode(sealed).decode("ascii")}


async def open_lab(keyring, tenant: str, data: dict) -> dict:
    """The sealed result of a lab-result event (for consumers holding the tenant key)."""
    return json.loads(await keyring.decrypt(tenant, base64.b64decode(data["sealed"]), PURPOSE))
