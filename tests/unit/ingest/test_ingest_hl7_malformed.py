"""Malformed HL7: every problem is an Hl7Error with a readable reason, AE or AR, never a crash."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from services.ingest.hl7.ack import build_ack
from services.ingest.hl7.errors import Hl7Error
from services.ingest.hl7.mapping import map_message
from services.ingest.hl7.parse import parse

GOOD_MSH = "MSH|^~\\&|APP|FAC|VIGIL|VIGIL|20240101120000+0000||MDM^T02^MDM_T02|CTRL1|P|2.5.1"
GOOD_PID = "PID|1||MRN123^^^HOSP^MR||Doe^Jane||19700101|F"
GOOD_TXA = "TXA|1|PN|TX|20240101115500+0000||20240101120000+0000||||||DOC-1|||||AU"
GOOD_OBX = "OBX|1|TX|note^Note||Patient reports rash after pembrolizumab.||||||F"


def message(*segments: str) -> str:
    return "\r".join(segments)


def outcome(raw):
    try:
        msg = parse(raw)
    except Hl7Error as exc:
        return None, exc
    try:
        return map_message(msg), None
    except Hl7Error as exc:
        return msg, exc


def test_good_message_maps():
    mapping, err = outcome(message(GOOD_MSH, GOOD_PID, GOOD_TXA, GOOD_OBX))
    assert err is None and mapping.primary.value == "DOC-1"


@pytest.mark.parametrize("raw, ack_code, location, words", [
    (b"", "AR", "MSH", "empty"),
    (b"\xff\xfe garbage", "AR", "", "UTF-8"),
    ("PID|1||X", "AR", "MSH", "must start with an MSH"),
    ("MSH", "AR", "MSH", "must start"),
    ("MSHX^~\\&|A", "AR", "MSH-1", "separator"),
    ("MSH|^|A|B", "AR", "MSH-2", "encoding characters"),
    (message(GOOD_MSH, "pid|1"), "AR", "segment 2", "segment id"),
    (message(GOOD_MSH.replace("MDM^T02^MDM_T02", ""), GOOD_PID), "AR", "MSH-9", "message type"),
    (message(GOOD_MSH.replace("|CTRL1|", "||"), GOOD_PID), "AR", "MSH-10", "control id"),
    (message(GOOD_MSH.replace("|2.5.1", "|3.0"), GOOD_PID), "AR", "MSH-12", "version"),
    (message(GOOD_MSH.replace("|P|", "|X|"), GOOD_PID), "AR", "MSH-11", "processing id"),
    (message(GOOD_MSH.replace("20240101120000+0000", "2024-01-01"), GOOD_PID), "AR", "MSH-7", "DTM"),
    (message(GOOD_MSH.replace("MDM^T02", "ZZZ^Z01"), GOOD_PID), "AR", "MSH-9.1", "not supported"),
    (message(GOOD_MSH.replace("MDM^T02", "MDM^T99"), GOOD_PID), "AR", "MSH-9.2", "not supported"),
    (message(GOOD_MSH, GOOD_TXA, GOOD_OBX), "AE", "PID", "PID segment is required"),
    (message(GOOD_MSH, "PID|1||^^^HOSP", GOOD_TXA, GOOD_OBX), "AE", "PID-3", "patient identifier"),
    (message(GOOD_MSH, GOOD_PID, GOOD_TXA), "AE", "OBX-2", "no note text"),
    (message(GOOD_MSH, GOOD_PID, GOOD_TXA, "OBX|1|ED|x||^application^pdf^Base64^JVBER"), "AE", "OBX-2", "found: ED"),
    (message(GOOD_MSH.replace("MDM^T02", "ADT^A01"), GOOD_PID), "AE", "PV1", "PV1 segment"),
    (message(GOOD_MSH.replace("MDM^T02", "ADT^A01"), GOOD_PID, "PV1|1|Q"), "AE", "PV1-2", "table 0004"),
    (message(GOOD_MSH.replace("MDM^T02", "SIU^S12"), GOOD_PID), "AE", "SCH", "SCH segment"),
    (message(GOOD_MSH.replace("MDM^T02", "SIU^S12"), "SCH|A1", GOOD_PID), "AE", "TQ1-7", "start and end"),
    (message(GOOD_MSH.replace("MDM^T02", "SIU^S12"), "SCH|A1", "TQ1|||||||20240102||", GOOD_PID), "AE", "TQ1-7",
     "start and end"),
])
def test_bad_input_is_refused_readably(raw, ack_code, location, words):
    header_msg, err = outcome(raw)
    assert err is not None, "expected a refusal"
    assert err.ack_code == ack_code and err.location == location
    assert words in str(err)
    ack = parse(build_ack(getattr(header_msg, "header", None), err.ack_code, err))
    assert ack.get("MSA", 1) == ack_code and ack.get("ERR", 3) == err.code


def test_error_text_never_contains_field_values():
    secret = "SECRETNAME"
    raw = message(GOOD_MSH.replace("MDM^T02", "ADT^A01"), f"PID|1||MRN1||{secret}^Jane", f"PV1|1|{secret}")
    _, err = outcome(raw)
    assert err is not None and secret not in str(err)


def test_ft_formatting_becomes_line_breaks():
    import base64
    ft = "OBX|1|FT|rpt^Report||Line one\\.br\\Line two with \\F\\ pipe||||||F"
    mapping, err = outcome(message(GOOD_MSH, GOOD_PID, GOOD_TXA, ft))
    assert err is None
    text = base64.b64decode(mapping.primary.body["content"][0]["attachment"]["data"]).decode()
    assert text == "Line one\nLine two with | pipe"


def test_repeated_tx_field_is_one_line_per_repetition():
    import base64
    mapping, err = outcome(message(GOOD_MSH, GOOD_PID, GOOD_TXA, "OBX|1|TX|n||first~second~third||||||F"))
    assert err is None
    assert base64.b64decode(mapping.primary.body["content"][0]["attachment"]["data"]).decode() == "first\nsecond\nthird"


segment_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=120)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(segment_text, max_size=6), st.sampled_from(["\r", "\n", "\r\n"]))
def test_fuzz_random_segments_never_crash(segments, sep):
    raw = sep.join([GOOD_MSH, *segments])
    _, err = outcome(raw)
    if err is not None:
        assert err.ack_code in ("AE", "AR") and str(err)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_fuzz_random_bytes_never_crash(raw):
    _, err = outcome(raw)
    assert err is None or err.ack_code in ("AE", "AR")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["MSH", "PID", "TXA", "OBX", "PV1", "SCH", "TQ1", "AIS"]),
                          st.lists(st.text(alphabet="abc019^~&\\|.+-", max_size=12), max_size=25)), max_size=8),
       st.sampled_from(["MDM^T02", "ORU^R01", "ADT^A01", "ADT^A03", "ADT^A08", "SIU^S12", "SIU^S14", "SIU^S15"]))
def test_fuzz_structured_messages_never_crash(segments, kind):
    lines = [GOOD_MSH.replace("MDM^T02", kind)] + ["|".join([seg, *fields]) for seg, fields in segments]
    mapping, err = outcome("\r".join(lines))
    if err is None:
        assert mapping.primary.body["resourceType"] in ("DocumentReference", "Encounter", "Appointment")
