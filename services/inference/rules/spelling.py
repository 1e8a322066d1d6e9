"""Misspelled category words ("pnuemonitis", "hepatitus", "myocarditus", "dermatits").

Only long words are corrected, against a short list of single-word category terms, and only
when the word is not itself a known word: a token of at least 7 letters that starts with the
same letter as a term and is within edit distance 1 of it (2 when the term has 10 letters or
more; a swap of two neighbouring letters counts as one edit). Common and medical words that are
close to a term ("nephritic", "hepatic", "position") are listed as known and never corrected.
"""
from __future__ import annotations

import functools
import re

#: Single-word terms of each category that are worth correcting (long enough to be unambiguous).
TERMS: dict[str, str] = {
    "colitis": "colitis", "enterocolitis": "colitis", "diarrhea": "colitis", "diarrhoea": "colitis",
    "pneumonitis": "pneumonitis",
    "hepatitis": "hepatitis", "transaminitis": "hepatitis", "hepatotoxicity": "hepatitis",
    "dermatitis": "dermatitis", "pruritus": "dermatitis", "maculopapular": "dermatitis",
    "thyroiditis": "thyroiditis", "hypothyroidism": "thyroiditis", "hyperthyroidism": "thyroiditis",
    "thyrotoxicosis": "thyroiditis",
    "hypophysitis": "hypophysitis", "hypopituitarism": "hypophysitis", "panhypopituitarism": "hypophysitis",
    "adrenalitis": "adrenal_insufficiency",
    "myocarditis": "myocarditis",
    "nephritis": "nephritis",
}
#: Real words within reach of a term: never corrected.
KNOWN_WORDS = frozenset({
    "nephritic", "nephrotic", "hepatic", "hepatitides", "colitides", "dermatitides", "pruritic", "diarrheal",
    "diarrheas", "hypothyroid", "hyperthyroid", "thyroidal", "myocardial", "myocardium", "pericarditis",
    "endocarditis", "myositis", "arthritis", "bronchitis", "gastritis", "proctitis", "cellulitis", "mastitis",
    "neuritis", "uveitis", "vasculitis", "pancreatitis", "thyroidectomy", "position", "positive", "politics",
    "condition", "hesitate", "hospital", "colonic", "colitis-like", "pneumonia", "pneumonias", "pneumothorax",
    "pneumonic", "hepatoma", "dermatitis", "dermatology", "dermatologic", "hypophyseal", "hypophysis",
    "nephrotoxic", "nephritides", "diarrhea", "hepatology", "transaminase", "transaminases",
})
MIN_LENGTH = 7
_WORD = re.compile(r"[A-Za-z]{7,}")


def _distance(a: str, b: str, limit: int) -> int:
    """Optimal string alignment distance (edits, neighbour swaps count once), stopped past ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous2: list[int] | None = None
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        best = current[0]
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            value = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if previous2 is not None and i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                value = min(value, previous2[j - 2] + 1)
            current[j] = value
            best = min(best, value)
        if best > limit:
            return limit + 1
        previous2, previous = previous, current
    return previous[len(b)]


@functools.lru_cache(maxsize=8192)
def correction(word: str) -> str | None:
    """The category a misspelled ``word`` stands for, or None (correct words and unknown words)."""
    lower = word.lower()
    if len(lower) < MIN_LENGTH or lower in TERMS or lower in KNOWN_WORDS:
        return None
    for term, category in TERMS.items():
        if term[0] != lower[0]:
            continue
        limit = 2 if len(term) >= 10 else 1
        if _distance(lower, term, limit) <= limit:
            return category
    return None


def misspellings(text: str) -> list[tuple[int, int, str]]:
    """``(start, end, category)`` of every misspelled category word in ``text``."""
    return [(m.start(), m.end(), category) for m in _WORD.finditer(text)
            if (category := correction(m.group())) is not None]
