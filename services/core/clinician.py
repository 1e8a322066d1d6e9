"""What a clinician's answer to a Vigil result means, for every consumer of the ``feedback``
stream (triage's ledger, the monitor's labels): the inbox sets a Task's status, a CDS Hooks card
is accepted or overridden.

    accepted   <- accepted, in-progress, completed
    overridden <- rejected, cancelled
    (anything else, e.g. Vigil's own ``requested`` writes and updates: no action)
"""
from __future__ import annotations

ACTIONS = ("accepted", "overridden")
#: Task.status -> the clinician's action.
BY_TASK_STATUS = {"accepted": "accepted", "in-progress": "accepted", "completed": "accepted",
                  "rejected": "overridden", "cancelled": "overridden"}


def task_action(status: str) -> str | None:
    """The clinician's action that a Task status records, or None (not a clinician's answer)."""
    return BY_TASK_STATUS.get(status)
