"""The arithmetic of the monitor: population stability index, percentiles, rates, bins.

PSI compares a distribution over bins (``actual``, the current period) with a reference
(``expected``, the baseline)::

    PSI = sum_i (a_i - e_i) * ln(a_i / e_i)

where ``a_i``, ``e_i`` are the bin *shares* (counts divided by their totals). A bin that is
empty on one side would make the logarithm infinite, so shares below ``PSI_FLOOR`` are raised
to it (the usual practice; 1e-4 keeps one empty bin's contribution below ~0.001 * ln(share/1e-4)
for small shares). Rules of thumb: < 0.1 stable, 0.1-0.2 moderate shift, > 0.2 significant.

Percentiles use linear interpolation between closest ranks (NumPy's default, "linear"):
the p-th percentile of sorted ``x[0..n-1]`` is at rank ``r = p/100 * (n - 1)``, i.e.
``x[floor(r)] + (r - floor(r)) * (x[floor(r)+1] - x[floor(r)])``.
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

PSI_FLOOR = 1e-4
#: Note-length bins (characters): [0, 500), [500, 1000), ..., [8000, inf).
NOTE_LENGTH_EDGES = (500, 1000, 2000, 4000, 8000)


def shares(counts: Mapping[str, float], bins: Iterable[str] | None = None) -> dict[str, float]:
    keys = list(bins) if bins is not None else list(counts)
    total = sum(max(0.0, float(counts.get(k, 0.0))) for k in keys)
    if total <= 0:
        return {k: 0.0 for k in keys}
    return {k: max(0.0, float(counts.get(k, 0.0))) / total for k in keys}


def psi(expected: Mapping[str, float], actual: Mapping[str, float], *, floor: float = PSI_FLOOR) -> float:
    """PSI of ``actual`` against ``expected`` (both raw counts or shares, over the union of bins)."""
    bins = sorted(set(expected) | set(actual))
    if not bins:
        return 0.0
    e, a = shares(expected, bins), shares(actual, bins)
    total = 0.0
    for b in bins:
        ei, ai = max(e[b], floor), max(a[b], floor)
        total += (ai - ei) * math.log(ai / ei)
    return total


def percentile(values: Sequence[float], p: float) -> float | None:
    """The p-th percentile (0-100) with linear interpolation; None for no values."""
    if not 0 <= p <= 100:
        raise ValueError(f"percentile {p} is not within 0..100")
    xs = sorted(float(v) for v in values)
    if not xs:
        return None
    rank = p / 100 * (len(xs) - 1)
    lo = math.floor(rank)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (rank - lo) * (xs[hi] - xs[lo])


def rate(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


def note_length_bin(length: int) -> str:
    """``"0-499"``, ``"500-999"``, ..., ``"8000+"``."""
    lower = 0
    for edge in NOTE_LENGTH_EDGES:
        if length < edge:
            return f"{lower}-{edge - 1}"
        lower = edge
    return f"{lower}+"
