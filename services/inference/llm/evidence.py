"""Guardrails as structure: chunk long notes, turn model quotes into offset-checked findings.

The model returns quotes, never offsets. Each quote is located verbatim in the chunk it was
given; the offsets are mapped back to the whole note; a quote that is not found verbatim is
dropped and counted (and the note goes to review). A grade is kept only when the model's
``grade_evidence`` is itself found verbatim and states that grade.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from services.inference.findings import Finding

#: Characters of note per model call. Notes longer than this are split, never truncated.
CHUNK_CHARS = 6_000
#: Overlap between consecutive chunks, so a sentence cut by one boundary is whole in the next
#: chunk (longer than any quote the schema allows: MAX_QUOTE_CHARS = 600).
CHUNK_OVERLAP_CHARS = 800
#: How far back from the hard boundary a chunk may end to break at a newline or sentence end.
BOUNDARY_SEARCH_CHARS = 400

_GRADE_STATEMENT = re.compile(r"(?:ctcae\s*)?(?:grade|gr\.?|g)\s*([1-5])\b", re.IGNORECASE)


@dataclass(frozen=True)
class Chunk:
    start: int
    end: int
    text: str


def chunk(text: str, size: int = CHUNK_CHARS, overlap: int = CHUNK_OVERLAP_CHARS) -> list[Chunk]:
    """Split ``text`` into overlapping chunks covering every character."""
    if size <= overlap:
        raise ValueError("chunk size must exceed the overlap")
    if len(text) <= size:
        return [Chunk(0, len(text), text)]
    chunks: list[Chunk] = []
    start = 0
    while True:
        end = min(len(text), start + size)
        if end < len(text):
            window = text[max(start + overlap + 1, end - BOUNDARY_SEARCH_CHARS):end]
            cut = max(window.rfind("\n"), window.rfind(". "))
            if cut >= 0:
                end = end - len(window) + cut + 1
        chunks.append(Chunk(start, end, text[start:end]))
        if end >= len(text):
            return chunks
        start = end - overlap


@dataclass
class Located:
    findings: list[Finding]
    dropped: int


def _stated_grade(evidence: str | None, grade: int | None, text: str) -> int | None:
    if grade is None or not evidence or evidence not in text:
        return None
    stated = {int(m.group(1)) for m in _GRADE_STATEMENT.finditer(evidence)}
    return grade if grade in stated else None


def locate(raw_findings: list[dict], piece: Chunk) -> Located:
    """Findings with offsets into the whole note, for raw model findings about ``piece``."""
    out: list[Finding] = []
    dropped = 0
    for raw in raw_findings:
        quote = raw["quote"]
        at = piece.text.find(quote)
        if not quote.strip() or at < 0:
            dropped += 1
            continue
        start = piece.start + at
        out.append(Finding(category=raw["category"], grade=_stated_grade(raw.get("grade_evidence"), raw.get("grade"),
                                                                          piece.text),
                           start=start, end=start + len(quote), quote=quote, attribution=raw["attribution"],
                           confidence=round(float(raw["confidence"]), 4)))
    return Located(out, dropped)


def merge(findings: list[Finding]) -> list[Finding]:
    """One finding per category (highest confidence, then earliest), ordered by position."""
    best: dict[str, Finding] = {}
    for f in findings:
        kept = best.get(f.category)
        if kept is None or (f.confidence, -f.start) > (kept.confidence, -kept.start):
            best[f.category] = f
    return sorted(best.values(), key=lambda f: (f.start, f.category))

