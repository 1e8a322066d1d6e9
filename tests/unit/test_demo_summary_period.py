"""The demo's summary counts one run: its period bounds the ledger rows, and clinician actions are
counted once per inbox Task (not once per decision the feedback path labelled)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from services.commands.demo.summary import RunPeriod, task_actions

T = datetime(2026, 3, 1, 10, tzinfo=timezone.utc)


def row(task: str, action: str | None, when: datetime | None) -> dict:
    return {"task_id": task, "clinician_action": action, "action_time": when}


def test_actions_count_once_per_task_within_the_run():
    period = RunPeriod(T, T + timedelta(minutes=10))
    rows = [row("1", "accepted", T + timedelta(minutes=2)), row("1", "accepted", T + timedelta(minutes=2)),
            row("1", "accepted", T + timedelta(minutes=2)),          # three decisions updated Task 1
            row("2", "overridden", T + timedelta(minutes=3)), row("2", "overridden", T + timedelta(minutes=3)),
            row("3", None, None),
            row("4", "accepted", T - timedelta(days=1)),              # an earlier run's action
            row("5", "accepted", T + timedelta(minutes=11))]          # after the run ended
    assert task_actions(rows, period) == {"1": "accepted", "2": "overridden"}


def test_a_period_contains_its_start_not_its_end_and_prints_covering_options():
    period = RunPeriod(T)
    assert T in period and T + timedelta(days=9) in period and None not in period
    period.until = T + timedelta(minutes=5, seconds=1.5)
    assert T + timedelta(minutes=5) in period and period.until not in period
    assert period.options() == "--since 2026-03-01T10:00:00Z --until 2026-03-01T10:05:02Z"
