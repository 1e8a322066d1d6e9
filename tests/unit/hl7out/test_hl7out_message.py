"""The results message parsed back with python-hl7: segments, required fields, the AI label, and
quotes holding HL7 delimiters and line breaks that read back character for character."""
from __future__ import annotations

from datetime import datetime, timezone

import hl7
import pytest

from services.core.hl7wire import AckError, escape, parse_ack
from services.hl7out.message import AI_LABEL, Target, build, control_id

NOTE = "Seen today.\nPt says: stools 6|7 ^day & ~night~ \\ worse\r\nPlan: hold drug."
QUOTE = NOTE[12:58]
WHEN = datetime(2026, 11, 20, 9, 30, 5, tzinfo=timezone.utc)


def decision(**over) -> dict:
    d = {"decisionId": "3f2a-dec", "patient": "p-1", "category": "colitis", "grade": 2, "kind": "urgent-task",
         "owner": None, "document": {"id": "doc-9", "versionId": "3"},
         "finding": {"start": 12, "end": 58, "quote": QUOTE, "grade": 2, "category": "colitis"},
         "engineVersion": "rules-2026.11", "mode": "active", "episodeKey": "ep"}
    d.update(over)
    return d


IDS = [{"system": "urn:vigil:north:patient:HOSP", "value": "MRN|1^2",
        "type": {"coding": [{"code": "MR"}]}},
       {"system": "urn:oid:2.16.840.1.113883.19.5", "value": "0042"}]


def msh(msg: hl7.Message, n: int):
    return msg.segment("MSH")[n]


def values(msg: hl7.Message, code: str) -> list[str]:
    return [msg.unescape(str(obx[5])) for obx in msg.segments("OBX") if str(obx[3][0][0]) == code]


def test_oru_segments_and_required_fields():
    ctrl = control_id("north", "3f2a-dec")
    text = build(decision(), Target("ORU^R01", "EPIC", "NVH", "north"), IDS, WHEN, ctrl)
    msg = hl7.parse(text)
    assert [str(s[0]) for s in msg] == ["MSH", "PID", "OBR", "NTE"] + ["OBX"] * 9
    assert str(msh(msg, 9)) == "ORU^R01^ORU_R01" and str(msh(msg, 10)) == ctrl
    assert (str(msh(msg, 11)), str(msh(msg, 12)), str(msh(msg, 7))) == ("P", "2.5.1", "20261120093005+0000")
    assert (str(msh(msg, 3)), str(msh(msg, 5)), str(msh(msg, 6))) == ("VIGIL", "EPIC", "NVH")
    pid3 = msg.segment("PID")[3]
    assert msg.unescape(str(pid3[0][0])) == "MRN|1^2" and str(pid3[0][3]) == "HOSP" and str(pid3[0][4]) == "MR"
    assert str(pid3[1][0]) == "0042" and str(pid3[1][3]) == "&2.16.840.1.113883.19.5&ISO"
    obr = msg.segment("OBR")
    assert str(obr[3]) == "3f2a-dec^VIGIL" and str(obr[4][0][0]) == "IRAE-AI" and str(obr[25]) == "P"
    assert msg.unescape(str(msg.segment("NTE")[3])) == AI_LABEL
    assert all(str(o[11]) == "P" for o in msg.segments("OBX"))
    assert [int(str(o[1])) for o in msg.segments("OBX")] == list(range(1, 10))
    assert str(msg.segments("OBX")[0][5]) == "AIAST^Artificial Intelligence asserted^v3-ObservationValue"
    assert values(msg, "ctcae-grade") == ["2"] and str(msg.segments("OBX")[3][5][0][0]) == "urgent"
    assert values(msg, "evidence-start") == ["12"] and values(msg, "evidence-end") == ["58"]
    assert values(msg, "source-note") == ["DocumentReference/doc-9/_history/3"]
    assert values(msg, "model-version") == ["rules-2026.11"]


def test_quotes_with_delimiters_and_line_breaks_read_back_exactly():
    text = build(decision(), Target(), IDS, WHEN, "C1")
    assert "\n" not in text and text.count("\r") == len(hl7.parse(text))  # breaks only between segments
    quote = values(hl7.parse(text), "evidence-quote")
    assert quote == [QUOTE] and quote[0] == NOTE[12:58] and len(quote[0]) == 58 - 12
    for char in "|^&~\\\n":
        assert char in QUOTE


def test_a_resend_is_the_same_message_and_ids_differ_per_decision():
    a = build(decision(), Target(), IDS, WHEN, control_id("t1", "d1"))
    assert a == build(decision(), Target(), IDS, WHEN, control_id("t1", "d1"))
    assert len({control_id("t1", "d1"), control_id("t2", "d1"), control_id("t1", "d2"),
                control_id("t1", "d1", 2)}) == 4
    assert len(control_id("t1", "d1")) == 20


def test_store_note_is_referred_to_by_its_source_identifier_and_no_grade_means_no_grade_obx():
    d = decision(grade=None, kind="routine-task", document={"id": "s1", "versionId": "1", "source": "store",
                                                            "identifier": {"system": "urn:x", "value": "TXA^12"}})
    d["finding"]["grade"] = None
    msg = hl7.parse(build(d, Target(), IDS, WHEN, "C2"))
    assert values(msg, "source-note") == ["TXA^12"] and values(msg, "ctcae-grade") == []
    assert str(msg.segments("OBX")[2][5][0][0]) == "routine"


def test_mdm_t02_carries_the_label_and_the_report():
    msg = hl7.parse(build(decision(), Target("MDM^T02"), IDS, WHEN, "C3"))
    assert [str(s[0]) for s in msg][:5] == ["MSH", "EVN", "PID", "PV1", "TXA"]
    assert str(msh(msg, 9)) == "MDM^T02^MDM_T02" and str(msg.segment("EVN")[1]) == "T02"
    txa = msg.segment("TXA")
    assert str(txa[12]) == "3f2a-dec^VIGIL" and str(txa[17]) == "PA" and str(txa[3]) == "TX"
    lines = values(msg, "report")
    assert lines[0] == AI_LABEL and any("CTCAE grade 2" in line for line in lines)
    assert values(msg, "ai-label") == ["AIAST^Artificial Intelligence asserted^v3-ObservationValue"]
    assert msg.unescape(str(msg.segments("NTE")[0][3])) == AI_LABEL


def test_a_message_without_a_patient_identifier_is_refused():
    with pytest.raises(ValueError):
        build(decision(), Target(), [], WHEN, "C4")


def test_ack_parsing():
    ack = parse_ack("MSH|^~\\&|ENG|H|VIGIL||20261120||ACK^R01^ACK|A1|P|2.5.1\rMSA|AE|C9|bad\rERR||PID^1^3|103^Table value not found^HL70357|E\r")
    assert (ack.code, ack.control_id, ack.error_code, ack.accepted) == ("AE", "C9", "103", False)
    assert parse_ack("MSH|^~\\&|E\nMSA|CA|X\n").accepted
    for bad in ("", "PID|1", "MSH|^~\\&|E\rMSA|ZZ|X", "MSH|^~\\&|E\rMSA|AA"):
        with pytest.raises(AckError):
            parse_ack(bad)
    assert escape("a|b\nc") == "a\\F\\b c" and escape("a\r\nb", keep_breaks=True) == "a\\X0D\\\\X0A\\b"


def test_pid3_echoes_the_assigning_authority_the_feed_sent():
    from services.hl7out.message import cx

    assert cx({"system": "urn:vigil:hl7:nw:patient:simulator-mrn", "value": "31", "assigner": {"display": "SIM MRN"},
               "type": {"coding": [{"code": "MR"}]}}) == "31^^^SIM MRN^MR"
    assert cx({"system": "urn:oid:1.2.3", "value": "9", "assigner": {"display": "NIST&MPI"}}) == \
        "9^^^NIST\\T\\MPI&1.2.3&ISO"
    assert cx({"system": "https://ehr.example.org/mrn", "value": "7"}) == "7^^^&https://ehr.example.org/mrn&URI"
    assert cx({"system": "urn:vigil:hl7:nw:patient:pid", "value": "5"}) == "5"
