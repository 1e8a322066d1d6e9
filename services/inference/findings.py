"""The finding an engine reports for one irAE category in one note.

A finding always carries its evidence: ``text[start:end] == quote`` for the note it came from.
Categories are the closed list of ``docs/irae-taxonomy.md``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

#: The closed list of categories, in the taxonomy's order (also the output order tie-break).
CATEGORIES: tuple[str, ...] = (
    "colitis", "pneumonitis", "hepatitis", "dermatitis", "thyroiditis", "hypophysitis",
    "adrenal_insufficiency", "myocarditis", "nephritis", "diabetes",
)

ATTRIBUTIONS: tuple[str, ...] = ("immunotherapy", "unspecified")

#: A finding below this confidence is one its engine is unsure of: a review-lane finding, not an
#: alert (the default of the tenant setting ``triage_min_confidence``, and what ``vigil eval`` uses).
ALERT_MIN_CONFIDENCE = 0.5


@dataclass(frozen=True)
class Finding:
    category: str
    grade: int | None
    start: int
    end: int
    quote: str
    attribution: str
    confidence: float

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            raise ValueError(f"unknown category {self.category!r}")
        if self.grade is not None and not 1 <= self.grade <= 5:
            raise ValueError(f"grade must be 1-5 or None, got {self.grade!r}")
        if self.attribution not in ATTRIBUTIONS:
            raise ValueError(f"unknown attribution {self.attribution!r}")
        if not 0 <= self.start <= self.end or self.end - self.start != len(self.quote):
            raise ValueError("finding offsets do not match the quote length")
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError("confidence must be within [0, 1]")

    def matches(self, text: str) -> bool:
        """True when the quote is exactly the note text at [start, end)."""
        return text[self.start:self.end] == self.quote

    def to_dict(self) -> dict:
        return asdict(self)
