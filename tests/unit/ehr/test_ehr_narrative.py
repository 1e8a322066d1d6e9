"""FHIR narrative rules on text.div: what a narrative may hold, and what is refused (422 with issues)."""
from __future__ import annotations

import pytest

from services.ehr import narrative, validation
from services.ehr.outcome import FhirError

NS = 'xmlns="http://www.w3.org/1999/xhtml"'


def div(inner: str, attrs: str = "") -> str:
    return f"<div {NS}{attrs}>{inner}</div>"


ALLOWED = [
    div("Hello"),
    div('<p style="color: red" class="x" lang="en">Lab <b>value</b> <i>high</i></p><br/>', ' xml:lang="en"'),
    div("<ul><li>one</li><li>two</li></ul>"),
    div('<table border="1"><thead><tr><th scope="col">a</th></tr></thead><tbody><tr><td colspan="2">b</td></tr>'
        "</tbody></table>"),
    div('<a href="https://example.org/x">link</a> <a name="anchor">here</a>'),
    div('<img src="#photo" alt="photo"/>'),
    div('<img src="data:image/png;base64,iVBORw0KGgo=" alt="x"/>'),
    div("&lt;script&gt; as text is text &amp; fine"),
]

REFUSED = [
    ("<div>no namespace</div>", "namespace"),
    (f'<p {NS}>not a div</p>', "div element"),
    ("plain text", "well-formed"),
    (div("<p>unclosed"), "well-formed"),
    (div("<script>alert(1)</script>"), "<script>"),
    (div('<form action="https://x"><input/></form>'), "<form>"),
    (div('<iframe src="https://x"></iframe>'), "<iframe>"),
    (div('<object data="x"></object>'), "<object>"),
    (div('<embed src="x"/>'), "<embed>"),
    (div('<base href="https://x/"/>'), "<base>"),
    (div('<link rel="stylesheet" href="x.css"/>'), "<link>"),
    (div('<meta http-equiv="refresh" content="0"/>'), "<meta>"),
    (div("<style>p { color: red }</style>"), "<style>"),
    (div('<p onclick="alert(1)">x</p>'), "onclick"),
    (div('<img src="x" onerror="alert(1)"/>'), "onerror"),
    (div('<a href="javascript:alert(1)">x</a>'), "script URL"),
    (div('<a href=" JaVa&#x09;Script:alert(1)">x</a>'), "script URL"),
    (div('<a href="data:text/html;base64,PHNjcmlwdD4=">x</a>'), "script URL"),
    (div('<p style="background: url(javascript:alert(1))">x</p>'), "style"),
    (div('<p style="width: expression(alert(1))">x</p>'), "style"),
    (div('<a xmlns:xl="http://www.w3.org/1999/xlink" xl:href="https://x">x</a>'), "xlink"),
    (div('<svg xmlns="http://www.w3.org/2000/svg"><script>x</script></svg>'), "not XHTML"),
    (div("<body>x</body>"), "<body>"),
    (div("<ins>x</ins>"), "<ins>"),
    (div("   "), "non-whitespace"),
    ('<!DOCTYPE div [<!ENTITY x "y">]>' + div("&x;"), "well-formed"),
    (12, "string"),
]


@pytest.mark.parametrize("text", ALLOWED)
def test_allowed_narratives(text):
    assert narrative.problems(text, "Patient.text.div") == []


@pytest.mark.parametrize("text,reason", REFUSED, ids=[str(r[1]) + str(i) for i, r in enumerate(REFUSED)])
def test_refused_narratives(text, reason):
    found = narrative.problems(text, "Patient.text.div")
    assert found, text
    assert any(reason.lower() in i["diagnostics"].lower() for i in found), found
    assert all(i["expression"] == ["Patient.text.div"] for i in found)


def test_validate_refuses_a_script_anywhere_in_the_resource():
    patient = {"resourceType": "Patient", "text": {"status": "generated", "div": div("ok")},
               "contained": [{"resourceType": "Practitioner", "id": "p1",
                              "text": {"status": "generated", "div": div("<script>x</script>")}}]}
    with pytest.raises(FhirError) as refused:
        validation.validate(patient, "Patient")
    assert refused.value.status == 422
    assert refused.value.issues[0]["expression"] == ["Patient.contained[0].text.div"]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {
        "resourceType": "Patient", "text": {"status": "generated", "div": div('<p onmouseover="x()">x</p>')}}}]}
    with pytest.raises(FhirError) as refused:
        validation.validate(bundle, "Bundle")
    assert refused.value.issues[0]["expression"] == ["Bundle.entry[0].resource.text.div"]


def test_validate_keeps_a_good_narrative():
    patient = {"resourceType": "Patient", "text": {"status": "generated", "div": ALLOWED[1]}}
    assert validation.validate(patient, "Patient") is patient
