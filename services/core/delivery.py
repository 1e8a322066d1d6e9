"""Whether a results channel may deliver a triage decision: one rule for every channel
(writeback's FHIR writes, hl7out's ORU/MDM messages, the CDS Hooks cards).

    why_not = delivery_suppressed(decision_data, await modes.state(tenant, agent))   # None: deliver

A pure function of the ``vigil.triage.decision`` event and the channel agent's mode; it reads
no table (the decision ledger is triage's, ``services/triage/ledger.py``)."""
from __future__ import annotations


def delivery_suppressed(decision: dict, state) -> str | None:
    """Why a result channel must not deliver this decision (None: deliver it). ``decision`` is the
    ``vigil.triage.decision`` data, ``state`` the results agent's ``modes.AgentState``: triage's own
    mode and ``write`` flag first, then the agent's current mode and pilot list. (The kill switch
    is the caller's: it keeps the decision for a later replay instead of finishing it.)"""
    if decision.get("run"):  # a batch run's decision: never on a results topic, refused if it ever were
        return "batch-run"
    if decision["mode"] == "silent" or decision.get("write") is False:
        return "mode-silent" if decision["mode"] == "silent" else "not-written-by-triage"
    if state.mode == "silent":
        return "mode-silent"
    if "pilot" in (decision["mode"], state.mode) and (not decision.get("owner")
                                                      or decision["owner"] not in state.pilot_practitioners):
        return "pilot-owner-not-listed"
    return None
