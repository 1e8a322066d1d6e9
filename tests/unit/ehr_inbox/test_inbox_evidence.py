"""Evidence spans on the note text and the inbox session cookie (no servers)."""
from __future__ import annotations

import time

from services.ehr.inbox import INPUT_SYSTEM, session, views


def _task(*spans) -> dict:
    items = []
    for start, end, quote in spans:
        for code, key, value in (("evidence-start", "valueInteger", start), ("evidence-end", "valueInteger", end),
                                 ("evidence-quote", "valueString", quote)):
            items.append({"type": {"coding": [{"system": INPUT_SYSTEM, "code": code}]}, key: value})
    return {"resourceType": "Task", "input": items}


def test_segments_highlight_exact_offsets_and_refuse_mismatches():
    text = "Naïve patient: grade 2 colitis, and rash on arms."
    a = text.index("grade 2 colitis")
    b = text.index("rash")
    found = views.spans(_task((b, b + 4, "rash"), (a, a + 15, "grade 2 colitis"), (0, 5, "wrong")))
    segments, bad = views.segments(text, found)
    assert bad == 1
    assert [s for s, marked in segments if marked] == ["grade 2 colitis", "rash"]
    assert "".join(s for s, _ in segments) == text


def test_out_of_range_offsets_are_not_highlighted():
    segments, bad = views.segments("short", [(2, 99, "ort")])
    assert bad == 1 and segments == [("short", False)]


def test_session_cookie_is_bound_to_its_tenant_and_signature():
    secret = "s" * 32
    s = session.Session("tenanta", "p1", "nonce", 2**31 - 1)
    raw = session.encode(secret, s)
    assert session.decode(secret, "tenanta", raw) == s
    assert session.decode(secret, "tenantb", raw) is None
    assert session.decode("x" * 32, "tenanta", raw) is None
    assert session.decode(secret, "tenanta", raw[:-1] + ("0" if raw[-1] != "0" else "1")) is None
    expired = session.encode(secret, session.Session("tenanta", "p1", "n", 1))
    assert session.decode(secret, "tenanta", expired) is None
    assert s.check_csrf(secret, s.csrf(secret)) and not s.check_csrf(secret, "0" * 64)
    link = session.issue_link(secret, "tenanta", "p1")
    assert session.read_link(secret, "tenanta", link).practitioner == "p1"
    assert session.read_link(secret, "tenantb", link) is None
    assert session.read_link(secret, "tenanta", link, now=time.time() + session.LINK_LIFETIME_S + 1) is None
    assert session.decode(secret, "tenanta", link) is None  # a link is not a session cookie, nor the reverse
    assert session.read_link(secret, "tenanta", raw) is None
