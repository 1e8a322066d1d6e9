"""Model replies are parsed against the closed schema; problems are described without content."""
from __future__ import annotations

import json

from services.inference.llm.engine import parse_output

GOOD = {"category": "hepatitis", "quote": "ALT 5x ULN", "attribution": "immunotherapy", "grade": None,
        "grade_evidence": None, "confidence": 0.7}


def test_valid_reply():
    findings, problem = parse_output(json.dumps({"findings": [GOOD]}))
    assert findings == [GOOD] and problem == ""


def test_invalid_replies_are_refused_with_a_content_free_reason():
    secret = "Patient Jane Roe, MRN 12345"
    cases = {
        "prose": f"The patient {secret} has hepatitis",
        "extra top-level field": json.dumps({"findings": [], "system_prompt": secret}),
        "extra finding field": json.dumps({"findings": [{**GOOD, "patient": secret}]}),
        "unknown category": json.dumps({"findings": [{**GOOD, "category": secret}]}),
        "grade out of range": json.dumps({"findings": [{**GOOD, "grade": 7}]}),
        "missing field": json.dumps({"findings": [{k: v for k, v in GOOD.items() if k != "quote"}]}),
        "not an object": json.dumps([GOOD]),
    }
    for name, content in cases.items():
        findings, problem = parse_output(content)
        assert findings is None, name
        assert problem and "Jane" not in problem and "12345" not in problem, name
