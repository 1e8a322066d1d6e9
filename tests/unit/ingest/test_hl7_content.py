"""What the hl7 stage reads out of note and result messages: text from TX/FT/ED, what has no text, labs."""
from __future__ import annotations

import base64
from pathlib import Path

import pytest

from services.ingest.hl7.parse import parse
from services.ingest.hl7stage.content import is_note, note_content, rtf_to_text
from services.ingest.hl7stage.labs import lab_results

SAMPLES = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "hl7v2"
HEAD = "MSH|^~\\&|A|FAC|B|C|20260101120000||MDM^T02|1|P|2.5.1\rPID|1||M1^^^H^MR\r"


def sample(name: str):
    path = SAMPLES / name
    if not path.exists():
        pytest.skip(f"sample {path} not available")
    return parse(path.read_bytes())


def test_ed_text_plain_in_base64_is_text():
    data = base64.b64encode("Grade 2 immune-mediated colitis.\nHold pembrolizumab.".encode()).decode()
    msg = parse(HEAD + f"OBX|1|ED|11506-3^Note^LN||^TEXT^PLAIN^Base64^{data}||||||F")
    content = note_content(msg)
    assert content.text == "Grade 2 immune-mediated colitis.\nHold pembrolizumab."
    assert content.content_types == ("text/plain",) and content.has_text


def test_ed_rtf_is_decoded_to_text():
    rtf = r"{\rtf1\ansi{\fonttbl{\f0 Arial;}}\f0 Assessment: \b pneumonitis\b0 , grade 2.\par Caf\'e9 visit.\par}"
    data = base64.b64encode(rtf.encode("cp1252")).decode()
    msg = parse(HEAD + f"OBX|1|ED|note^Note||^TEXT^RTF^Base64^{data}||||||F")
    content = note_content(msg)
    assert content.text == "Assessment: pneumonitis, grade 2.\nCafé visit."
    assert content.content_types == ("text/rtf",)


def test_hex_and_plain_encodings():
    hexed = "Rash grade 1".encode().hex()
    msg = parse(HEAD + f"OBX|1|ED|n^N||^TEXT^PLAIN^Hex^{hexed}||||||F\rOBX|2|ED|n^N||^TEXT^PLAIN^A^second line||||||F")
    assert note_content(msg).text == "Rash grade 1\nsecond line"


def test_pdf_image_and_reference_pointers_are_not_text_but_are_recorded():
    msg = parse(HEAD + "OBX|1|ED|n^N||^application^pdf^Base64^JVBERi0xLjQ=||||||F\r"
                       "OBX|2|ED|n^N||^IM^JPEG^Base64^/9j/4AAQ||||||F\r"
                       "OBX|3|RP|n^N||https://pacs.example/1^^image^JPEG||||||F")
    content = note_content(msg)
    assert content.text == "" and not content.has_text
    assert content.content_types == ("application/pdf", "image/jpeg", "reference")


def test_undecodable_base64_is_no_text_not_a_crash():
    msg = parse(HEAD + "OBX|1|ED|n^N||^TEXT^PLAIN^Base64^@@not base64@@||||||F")
    assert note_content(msg).text == ""


def test_rtf_skips_font_tables_pictures_and_hidden_destinations():
    rtf = r"{\rtf1{\fonttbl{\f0 Times;}}{\colortbl;\red0\green0\blue0;}{\*\generator Word;}{\pict abc}Visible\line text\tab end}"
    assert rtf_to_text(rtf) == "Visible\ntext\tend"


def test_public_samples_notes_and_results():
    assert note_content(sample("MDM-T02-02.hl7")).text.startswith("Toilet cylinder crackers")
    assert note_content(sample("MDM-T02-01.hl7")).content_types == ("application/pdf",)
    oru = sample("ORU-R01-01.hl7")
    assert is_note(oru) and not note_content(oru).has_text
    assert not is_note(sample("LAB-ORU-1.hl7"))
    cbc = lab_results(sample("LRI_2.0-NG_CBC_Typ_Message.hl7"), None)
    assert len(cbc) == 25
    first = cbc[0]
    assert (first.value_type, first.result["value"], first.result["unit"], first.result["code"]) == \
        ("NM", 4.41, "10*6/uL", "26453-1")
    assert first.result["referenceRange"] == "4.3 to 6.2" and first.result["abnormalFlags"] == "N"
    assert first.observed_at and first.observed_at.startswith("2011-01-03T")
    lab = lab_results(sample("LAB-ORU-1.hl7"), None)
    assert [r.value_type for r in lab] == ["NM"] * 10
    assert lab[1].result["value"] == 4.06 and lab[0].result["value"] is None  # a pending result has no value yet


def test_a_non_numeric_nm_is_kept_as_sent():
    msg = parse(HEAD.replace("MDM^T02", "ORU^R01") + "OBX|1|NM|718-7^Hgb^LN||>20|g/dL|||||F")
    [result] = lab_results(msg, None)
    assert result.result["value"] == ">20"
