"""One triage decision as an HL7 v2.5.1 results message: ORU^R01 or MDM^T02 (pure construction).

    text = build(decision, Target(...), patient_ids, sent_at)      # CR-separated segments

ORU^R01 (``ORU_R01``)::

    MSH  sender VIGIL, receiver from the profile, MSH-7 the decision's time, MSH-10 = control_id()
    PID  PID-3: the patient's identifiers (repeating CX); no name or other demographics (minimum
         necessary: the receiving engine matches on the identifier)
    OBR  OBR-3 filler order number = decision id ^ VIGIL, OBR-4 the AI irAE review code,
         OBR-7 the decision time, OBR-25 ``P`` (preliminary: not verified by a clinician)
    NTE  the AI label, as free text the clinician sees with the result
    OBX  OBX-11 ``P`` on every one; OBX-4 groups the spans of one piece of evidence:
           ai-label      CWE  AIAST^Artificial Intelligence asserted^v3-ObservationValue
           finding       CWE  the irAE category
           ctcae-grade   NM   1-5 (absent when triage had no grade)
           urgency       CWE  urgent | routine | review (from the decision kind)
           evidence-*    TX / NM  quote, start, end (code points of the note text, end exclusive)
           source-note   ST   DocumentReference/<id>/_history/<v>, or the note's source identifier
                              (TXA-12 / MSH-10) for a note that came in on the HL7 feed
           model-version ST   the rule set or model that found it

MDM^T02 (``MDM_T02``): MSH, EVN, PID, PV1 (class ``N``, not applicable), TXA (TXA-12 the decision
id, TXA-17 ``PA`` pre-authenticated: not yet signed by a clinician, TXA-13 the source note), then
the same label and a readable report as TX OBX lines (one per line), each line escaped.

Every value goes through ``services.core.hl7wire.escape``; quotes keep their line breaks as hex
escapes, so ``| ^ & ~ \\`` and new lines in a note never break the message and read back exactly.
The message is a function of (decision, target, identifiers, time) alone: a resend is byte-identical.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from services.core.events import deterministic_id
from services.core.hl7wire import ENCODING_CHARACTERS, VIGIL_APPLICATION, escape

VERSION = "2.5.1"
SENDING_APPLICATION = VIGIL_APPLICATION
LOCAL = "VIGIL"                       # coding system of Vigil's own codes (HL7 local table)
AI_LABEL = ("AI-generated and unverified: this finding was produced by an artificial intelligence system "
            "(Vigil) from a clinical note and has not been reviewed by a clinician.")
AIAST = ("AIAST", "Artificial Intelligence asserted", "v3-ObservationValue")
REVIEW_CODE = ("IRAE-AI", "AI immune-related adverse event finding")
URGENCY = {"urgent-task": "urgent", "routine-task": "routine", "review-task": "review"}
IDENTIFIER_ROOT = "urn:vigil"          # systems the HL7 feed gave identifiers (services.ingest mapping)


@dataclass(frozen=True)
class Target:
    """Where and as what the message goes (from the tenant's ``[integration.hl7_out]``)."""

    message: str = "ORU^R01"              # ORU^R01 | MDM^T02
    receiving_application: str = ""
    receiving_facility: str = ""
    sending_facility: str = ""


def control_id(tenant: str, decision_id: str, version: int = 1) -> str:
    """MSH-10: the same for every send of one version of a decision's result (20 characters,
    MSH-10's length in 2.5.1), so the receiver recognises a resend."""
    return "V" + deterministic_id("hl7out", tenant, decision_id, version).replace("-", "")[:19].upper()


def stamp(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y%m%d%H%M%S+0000")


def cx(identifier: dict) -> str:
    """A FHIR-style identifier (system, value, type, assigner) as one CX repetition:
    value^^^authority^type. The authority is the one the HL7 feed sent (``assigner.display``, and
    the OID of an ``urn:oid:`` system), else the system itself as a URI."""
    system, value = identifier.get("system") or "", identifier.get("value") or ""
    namespace = escape((identifier.get("assigner") or {}).get("display") or "")
    if system.startswith("urn:oid:"):
        authority = f"{namespace}&{escape(system[8:])}&ISO"
    elif namespace:
        authority = namespace
    elif system.startswith(IDENTIFIER_ROOT + ":") and ":patient:" in system:
        authority = escape(system.rsplit(":patient:", 1)[1])   # the feed's namespace, as normalised
        authority = "" if authority == "pid" else authority
    elif system:
        authority = f"&{escape(system)}&URI"
    else:
        authority = ""
    codes = [c.get("code") for c in ((identifier.get("type") or {}).get("coding") or []) if c.get("code")]
    id_type = escape(codes[0]) if codes else ""
    return f"{escape(value)}^^^{authority}^{id_type}".rstrip("^")


def _ce(code: str, text: str, system: str = LOCAL) -> str:
    return f"{escape(code)}^{escape(text)}^{escape(system)}"


def _label(category: str) -> str:
    return category.replace("-", " ").replace("_", " ")


def note_pointer(decision: dict) -> str:
    doc = decision["document"]
    if doc.get("source") == "store":
        ident = doc.get("identifier") or {}
        return ident.get("value") or doc["id"]
    return f"DocumentReference/{doc['id']}" + (f"/_history/{doc['versionId']}" if doc.get("versionId") else "")


def _grade(decision: dict) -> int | None:
    g = decision.get("grade")
    return g if g is not None else decision["finding"].get("grade")


def _msh(target: Target, kind: str, structure: str, sent_at: datetime, ctrl: str) -> str:
    return "|".join(["MSH", ENCODING_CHARACTERS, SENDING_APPLICATION, escape(target.sending_facility),
                     escape(target.receiving_application), escape(target.receiving_facility), stamp(sent_at), "",
                     f"{kind}^{structure}", ctrl, "P", VERSION])


def _pid(patient_ids: list[dict]) -> str:
    return "|".join(["PID", "1", "", "~".join(cx(i) for i in patient_ids)])


def _obx(n: int, vtype: str, code: tuple[str, str], value: str, sub: str = "") -> str:
    """OBX-1 set id, -2 value type, -3 code, -4 sub-id, -5 value, -11 ``P`` (preliminary)."""
    return "|".join(["OBX", str(n), vtype, _ce(*code), sub, value, "", "", "", "", "", "P"])


def observations(decision: dict) -> list[tuple[str, tuple[str, str], str, str]]:
    """(value type, code, escaped value, sub-id) of every OBX of the ORU, in order."""
    f = decision["finding"]
    category = f.get("category") or decision["category"]
    grade = _grade(decision)
    out = [("CWE", ("ai-label", "AI provenance"), _ce(*AIAST), ""),
           ("CWE", ("finding", "Immune-related adverse event category"), _ce(category, _label(category), "VIGIL-IRAE"),
            "")]
    if grade is not None:
        out.append(("NM", ("ctcae-grade", "CTCAE grade"), str(int(grade)), ""))
    urgency = URGENCY.get(decision["kind"], "routine")
    out += [("CWE", ("urgency", "Urgency"), _ce(urgency, urgency.capitalize(), "VIGIL-URGENCY"), ""),
            ("TX", ("evidence-quote", "Evidence quote"), escape(f["quote"], keep_breaks=True), "1"),
            ("NM", ("evidence-start", "Evidence start offset"), str(int(f["start"])), "1"),
            ("NM", ("evidence-end", "Evidence end offset"), str(int(f["end"])), "1"),
            ("ST", ("source-note", "Source note"), escape(note_pointer(decision)), ""),
            ("ST", ("model-version", "Model or rule set version"), escape(decision["engineVersion"]), "")]
    return out


def report_lines(decision: dict) -> list[str]:
    """The MDM document: readable lines (unescaped)."""
    f = decision["finding"]
    category = f.get("category") or decision["category"]
    grade = _grade(decision)
    lines = [AI_LABEL, "",
             f"Possible immune-related adverse event: {_label(category)}" +
             (f", CTCAE grade {grade}" if grade is not None else ""),
             f"Urgency: {URGENCY.get(decision['kind'], 'routine')}",
             f"Evidence (characters {int(f['start'])}-{int(f['end'])} of the source note):"]
    lines += [f"  \"{line}\"" for line in f["quote"].replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    lines += [f"Source note: {note_pointer(decision)}", f"Model or rule set: {decision['engineVersion']}",
              f"Decision: {decision['decisionId']}"]
    return lines


def build(decision: dict, target: Target, patient_ids: list[dict], sent_at: datetime, ctrl: str) -> str:
    """The message text (segments separated by CR, a trailing CR)."""
    if not patient_ids:
        raise ValueError("a results message needs at least one patient identifier")
    when = stamp(sent_at)
    filler = f"{escape(decision['decisionId'])}^{LOCAL}"
    if target.message == "MDM^T02":
        segments = [_msh(target, "MDM^T02", "MDM_T02", sent_at, ctrl), f"EVN|T02|{when}", _pid(patient_ids),
                    "PV1|1|N",
                    "|".join(["TXA", "1", escape(REVIEW_CODE[0]), "TX", when, "", "", "", "", "", "", "", filler,
                              escape(note_pointer(decision)), "", "", "", "PA"])]
        segments += [_obx(1, "CWE", ("ai-label", "AI provenance"), _ce(*AIAST))]
        segments += [_obx(n, "TX", ("report", "AI finding report"), escape(line), str(n - 1))
                     for n, line in enumerate(report_lines(decision), start=2)]
        segments.append(f"NTE|1|L|{escape(AI_LABEL)}")
    elif target.message == "ORU^R01":
        segments = [_msh(target, "ORU^R01", "ORU_R01", sent_at, ctrl), _pid(patient_ids),
                    "|".join(["OBR", "1", "", filler, _ce(*REVIEW_CODE), "", "", when] + [""] * 14 +
                             [when, "", "", "P"]),
                    f"NTE|1|L|{escape(AI_LABEL)}"]
        segments += [_obx(n, vtype, code, value, sub)
                     for n, (vtype, code, value, sub) in enumerate(observations(decision), start=1)]
    else:
        raise ValueError(f"unsupported results message {target.message!r}")
    return "\r".join(segments) + "\r"
