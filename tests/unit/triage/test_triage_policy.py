"""Triage policy without servers: grades, kinds, collapsing, follow-ups, tenant settings."""
from __future__ import annotations

import pytest

from services.core.config import ConfigError
from services.core.tenancy import Tenant
from services.triage.policy import (REVIEW_CATEGORY, TriageSettings, effective, normalize_grade, plan,
                                    wants_followup)


def f(category, grade, start=0, confidence=0.9, quote="q"):
    return {"category": category, "grade": grade, "start": start, "end": start + len(quote), "quote": quote,
            "attribution": "immunotherapy", "confidence": confidence}


@pytest.mark.parametrize("raw,grade", [(3, 3), ("G2", 2), ("grade 4", 4), (0, None), (6, None), (None, None),
                                       ("severe", None), (True, None), (2.0, 2)])
def test_normalize_grade(raw, grade):
    assert normalize_grade(raw) == grade


def test_kinds_and_collapse_per_category():
    s = TriageSettings()
    plans = plan({"findings": [f("colitis", 2, 5, quote="a"), f("colitis", 3, 50, quote="b"),
                               f("rash", None, 9), f("hepatitis", 1, confidence=0.2)]}, s)
    by = {p.category: p for p in plans}
    assert [p.category for p in plans] == ["colitis", "hepatitis", "rash"]  # stable order -> stable ids
    assert by["colitis"].kind == "urgent-task" and by["colitis"].finding["quote"] == "b"
    assert by["rash"].kind == "routine-task" and by["rash"].grade is None
    assert by["hepatitis"].kind == "none"  # below the tenant's confidence floor


def test_review_task_only_when_nothing_survived():
    s = TriageSettings()
    [review] = plan({"findings": [], "reviewRequired": True}, s)
    assert review.kind == "review-task" and review.category == REVIEW_CATEGORY
    assert plan({"findings": [], "reviewRequired": False}, s) == []
    assert [p.kind for p in plan({"findings": [f("colitis", 1)], "reviewRequired": True}, s)] == ["routine-task"]


def test_episode_grade_never_downgrades_and_followup_once():
    s = TriageSettings()
    [p2] = plan({"findings": [f("colitis", 2)]}, s)
    [p1] = plan({"findings": [f("colitis", 1)]}, s)
    [p3] = plan({"findings": [f("colitis", 3)]}, s)
    assert effective(p2, None) == (2, "routine-task")
    assert effective(p1, 3) == (3, "urgent-task")      # an update keeps the episode's highest grade
    assert effective(p3, 2) == (3, "urgent-task")      # and escalates
    assert wants_followup(2, "routine-task", "open", None)
    assert not wants_followup(2, "routine-task", "update", 2)   # already requested for this episode
    assert wants_followup(2, "routine-task", "update", 1)       # first time the episode reaches grade 2
    assert not wants_followup(3, "urgent-task", "open", None)


def test_tenant_settings_fail_fast():
    t = Tenant(id="north", settings={"followup_within_days": 3, "default_owner": "Group/onc-pool"})
    assert TriageSettings.from_tenant(t) == TriageSettings(3, 0.5, "Group/onc-pool", 30)
    with pytest.raises(ConfigError, match="followup_within_days"):
        TriageSettings.from_tenant(Tenant(id="north", settings={"followup_within_days": "soon"}))
    with pytest.raises(ConfigError, match="default_owner"):
        TriageSettings.from_tenant(Tenant(id="north", settings={"default_owner": "Dr Smith"}))


def test_uncertain_findings_go_to_the_review_lane_per_tenant():
    from services.triage.policy import joins_episode

    findings = {"findings": [f("colitis", 2, confidence=0.4), f("hepatitis", 3, confidence=0.9)]}
    quiet = {p.category: p for p in plan(findings, TriageSettings())}
    assert quiet["colitis"].kind == "none" and quiet["hepatitis"].kind == "urgent-task"
    lane = TriageSettings.from_tenant(Tenant(id="north", settings={"triage_uncertain": "review-task"}))
    by = {p.category: p for p in plan(findings, lane)}
    assert by["colitis"].kind == "review-task" and by["colitis"].finding["quote"] == "q"
    assert by["hepatitis"].kind == "urgent-task"
    # the review lane stays outside the category's alert episode; note reviews and alerts join it
    assert not joins_episode(by["colitis"]) and joins_episode(by["hepatitis"])
    [note_review] = plan({"findings": [], "reviewRequired": True}, lane)
    assert joins_episode(note_review)
    assert effective(by["colitis"], 3) == (2, "review-task")  # never escalated into an alert
    with pytest.raises(ConfigError, match="triage_uncertain"):
        TriageSettings.from_tenant(Tenant(id="north", settings={"triage_uncertain": "urgent-task"}))
