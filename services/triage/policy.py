"""Triage policy: pure functions from one findings event to what should happen, per category.

Rules (documented in docs/triage.md):
- CTCAE grade is normalised to 1..5 or None (None: the note states no grade).
- Findings of one category in one note collapse to one plan: the highest grade, then the
  highest confidence, then the earliest mention provides the evidence.
- kind: grade >= 3 -> ``urgent-task``; otherwise ``routine-task``; a finding below the tenant's
  ``triage_min_confidence`` is one the engine itself is unsure of (an open question, a symptom
  with no stated cause): it is never an alert; it goes to the tenant's review lane,
  ``triage_uncertain``: ``none`` (default: recorded, never written) or ``review-task`` (a
  lower-priority review Task for that category, outside the category's alert episode).
- grade 2 -> also a follow-up request within ``followup_within_days`` (default 7).
- a note flagged ``reviewRequired`` whose findings were all dropped -> one ``review-task`` of
  category ``note-review`` (a clinician reads the note; the engine could not back a finding).
- Episodes (same patient + category open) turn a plan into an update of the open Task; the
  effective grade of an update is the highest grade seen in the episode, so an update can
  escalate routine -> urgent but never downgrade.
"""
from __future__ import annotations

from dataclasses import dataclass

from services.core.config import ConfigError
from services.core.tenancy import Tenant

REVIEW_CATEGORY = "note-review"
URGENT_GRADE = 3
FOLLOWUP_GRADE = 2
DEFAULT_FOLLOWUP_DAYS = 7
DEFAULT_MIN_CONFIDENCE = 0.5
#: An open episode with no new evidence for this many days no longer absorbs new findings.
DEFAULT_EPISODE_IDLE_DAYS = 30
#: What a finding below the confidence floor becomes (the review lane), per tenant.
UNCERTAIN_KINDS = ("none", "review-task")
DEFAULT_UNCERTAIN_KIND = "none"


@dataclass(frozen=True)
class TriageSettings:
    followup_within_days: int = DEFAULT_FOLLOWUP_DAYS
    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    default_owner: str | None = None
    episode_idle_days: int = DEFAULT_EPISODE_IDLE_DAYS
    uncertain_kind: str = DEFAULT_UNCERTAIN_KIND

    @classmethod
    def from_tenant(cls, tenant: Tenant) -> "TriageSettings":
        where = f"tenant {tenant.id}: settings"
        days = tenant.setting("followup_within_days", DEFAULT_FOLLOWUP_DAYS)
        if not isinstance(days, int) or not 0 <= days <= 365:
            raise ConfigError(f"{where}.followup_within_days={days!r}: expected 0..365")
        conf = tenant.setting("triage_min_confidence", DEFAULT_MIN_CONFIDENCE)
        if not isinstance(conf, (int, float)) or not 0 <= conf <= 1:
            raise ConfigError(f"{where}.triage_min_confidence={conf!r}: expected 0..1")
        owner = tenant.setting("default_owner") or None
        if owner is not None and not str(owner).startswith(("Practitioner/", "PractitionerRole/", "Group/",
                                                             "Organization/")):
            raise ConfigError(f"{where}.default_owner={owner!r}: expected a Practitioner, PractitionerRole, "
                              "Group or Organization reference")
        idle = tenant.setting("episode_idle_days", DEFAULT_EPISODE_IDLE_DAYS)
        if not isinstance(idle, int) or idle < 1:
            raise ConfigError(f"{where}.episode_idle_days={idle!r}: expected a positive whole number")
        uncertain = tenant.setting("triage_uncertain", DEFAULT_UNCERTAIN_KIND)
        if uncertain not in UNCERTAIN_KINDS:
            raise ConfigError(f"{where}.triage_uncertain={uncertain!r}: expected one of {', '.join(UNCERTAIN_KINDS)}")
        return cls(days, float(conf), owner, idle, uncertain)


@dataclass(frozen=True)
class Plan:
    category: str
    grade: int | None
    kind: str                     # urgent-task | routine-task | review-task | none
    finding: dict                 # {start, end, quote, grade, category}
    confidence: float | None


def normalize_grade(value) -> int | None:
    """CTCAE grade as 1..5, or None. Accepts ints, digit strings and "G2"/"grade 3" forms."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        digits = "".join(ch for ch in value if ch.isdigit())
        if not digits:
            return None
        value = int(digits)
    if not isinstance(value, (int, float)):
        return None
    grade = int(value)
    return grade if 1 <= grade <= 5 else None


def kind_for(grade: int | None) -> str:
    return "urgent-task" if grade is not None and grade >= URGENT_GRADE else "routine-task"


def _rank(finding: dict) -> tuple:
    return (normalize_grade(finding.get("grade")) or 0, finding.get("confidence") or 0.0, -finding["start"])


def plan(data: dict, settings: TriageSettings) -> list[Plan]:
    """One plan per category present in a findings event, in category order (stable ids)."""
    by_category: dict[str, dict] = {}
    for f in data.get("findings") or ():
        best = by_category.get(f["category"])
        if best is None or _rank(f) > _rank(best):
            by_category[f["category"]] = f
    plans = []
    for category in sorted(by_category):
        f = by_category[category]
        grade = normalize_grade(f.get("grade"))
        confidence = f.get("confidence")
        uncertain = confidence is not None and confidence < settings.min_confidence
        kind = settings.uncertain_kind if uncertain else kind_for(grade)
        plans.append(Plan(category, grade, kind, {"start": f["start"], "end": f["end"], "quote": f["quote"],
                                                  "grade": grade, "category": category}, confidence))
    if not plans and data.get("reviewRequired"):
        plans.append(Plan(REVIEW_CATEGORY, None, "review-task",
                          {"start": 0, "end": 0, "quote": "", "grade": None, "category": REVIEW_CATEGORY}, None))
    return plans


def joins_episode(plan_: Plan) -> bool:
    """Alerts (and note reviews) join the category's episode; a review-lane plan stays outside it
    so that it never turns a later alert into an update of a lower-priority review Task."""
    return plan_.kind != "none" and not (plan_.kind == "review-task" and plan_.category != REVIEW_CATEGORY)


def effective(plan_: Plan, previous_grade: int | None) -> tuple[int | None, str]:
    """Grade and kind of a plan joining an episode whose highest grade so far is ``previous_grade``."""
    if plan_.kind in ("none", "review-task"):
        return plan_.grade, plan_.kind
    grades = [g for g in (plan_.grade, previous_grade) if g is not None]
    grade = max(grades) if grades else None
    return grade, kind_for(grade)


def wants_followup(grade: int | None, kind: str, action: str | None, previous_grade: int | None) -> bool:
    """Grade 2 asks for a follow-up once per episode (when it opens at 2 or first reaches 2)."""
    if kind not in ("routine-task",) or grade != FOLLOWUP_GRADE:
        return False
    return action == "open" or (previous_grade or 0) < FOLLOWUP_GRADE
