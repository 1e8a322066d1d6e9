"""Chunking never loses text; quotes become offsets only when verbatim; grades need stated evidence."""
from __future__ import annotations

import random

import pytest

from services.inference.findings import Finding
from services.inference.llm.evidence import CHUNK_CHARS, CHUNK_OVERLAP_CHARS, Chunk, chunk, locate, merge
from services.inference.llm.prompt import MAX_QUOTE_CHARS


def raw(category="colitis", quote="immune-mediated colitis", grade=None, evidence=None, confidence=0.8):
    return {"category": category, "quote": quote, "attribution": "immunotherapy", "grade": grade,
            "grade_evidence": evidence, "confidence": confidence}


def test_short_note_is_one_chunk():
    assert chunk("short note") == [Chunk(0, 10, "short note")]


@pytest.mark.parametrize("seed", range(5))
def test_chunks_cover_every_character_with_overlap(seed):
    rng = random.Random(seed)
    words = ["colitis", "grade", "2", "\n", "pembrolizumab.", "stable", "the", "plan"]
    text = " ".join(rng.choice(words) for _ in range(rng.randint(3000, 9000)))
    pieces = chunk(text)
    assert pieces[0].start == 0 and pieces[-1].end == len(text)
    for piece in pieces:
        assert text[piece.start:piece.end] == piece.text and len(piece.text) <= CHUNK_CHARS
    for before, after in zip(pieces, pieces[1:]):
        assert after.start == before.end - CHUNK_OVERLAP_CHARS      # overlap, no gap
    assert CHUNK_OVERLAP_CHARS > MAX_QUOTE_CHARS                    # any quote is whole in some chunk


def test_chunks_prefer_line_boundaries():
    line = "x" * 99 + "\n"
    pieces = chunk(line * 200)
    assert all(p.text.endswith("\n") for p in pieces[:-1])


def test_locate_maps_offsets_back_and_drops_what_is_not_verbatim():
    text = "HPI: on nivolumab.\nA/P: grade 2 immune-mediated colitis.\n"
    piece = Chunk(100, 100 + len(text), text)
    out = locate([raw(), raw(quote="immune mediated colitis"), raw(quote="Immune-mediated colitis"),
                  raw(quote="   ")], piece)
    assert out.dropped == 3
    [f] = out.findings
    assert f.start == 100 + text.index("immune-mediated colitis") and f.end - f.start == len(f.quote)


def test_grade_kept_only_with_verbatim_stated_evidence():
    text = "A/P: G2 immune-mediated colitis. Grade 3 fatigue.\n"
    piece = Chunk(0, len(text), text)
    kept = locate([raw(grade=2, evidence="G2 immune-mediated colitis")], piece).findings[0]
    wrong_number = locate([raw(grade=3, evidence="G2 immune-mediated colitis")], piece).findings[0]
    invented = locate([raw(grade=2, evidence="grade 2 colitis")], piece).findings[0]
    missing = locate([raw(grade=2, evidence=None)], piece).findings[0]
    assert (kept.grade, wrong_number.grade, invented.grade, missing.grade) == (2, None, None, None)


def test_merge_keeps_one_finding_per_category():
    a = Finding("colitis", None, 10, 17, "colitis", "immunotherapy", 0.6)
    b = Finding("colitis", 2, 50, 57, "colitis", "immunotherapy", 0.9)
    c = Finding("hepatitis", None, 5, 14, "hepatitis", "unspecified", 0.7)
    assert merge([a, b, c]) == [c, b]
