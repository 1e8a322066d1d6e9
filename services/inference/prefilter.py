"""Which notes the hybrid route sends to the model: the rules engine's prefilter.

A note goes to the model when the rules engine reports an alert on it (a finding at or above the
alert confidence). The model then confirms or rejects those alerts; what the rules engine is
unsure of already goes to the review lane, and a note on which it reports nothing, or only
review-lane findings, is answered by the rules alone. ``vigil eval`` reports the prefilter's
recall (gold-positive notes forwarded) and forward rate apart from the model's result.
"""
from __future__ import annotations

from typing import Sequence

from services.inference.findings import ALERT_MIN_CONFIDENCE, Finding


def forwards(findings: Sequence[Finding]) -> bool:
    """True when the rules engine's findings on a note make it worth the model's reading."""
    return any(f.confidence >= ALERT_MIN_CONFIDENCE for f in findings)
