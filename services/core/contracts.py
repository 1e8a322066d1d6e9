"""The bus contracts, declared once: every stream a tenant has and every event type on it.

Services import these names instead of spelling the strings::

    from services.core import contracts
    ctx.emit(contracts.ACTIONS, ctx.child(contracts.TRIAGE_DECISION, data))
    StageSpec(name="triage", input_stream=contracts.FINDINGS, ...)

A stream is one topic per tenant, ``vigil.<tenant>.<stream>`` (``services.core.tenancy.topic_name``).
An event type is a CloudEvents ``type``; its payload schema is ``schemas/<type>.json``
(``services.core.schemas`` validates against it). ``tests/unit/test_contracts.py`` fails when
``EVENT_TYPES`` and the files in ``schemas/`` disagree (either way) and when a module under
``services/`` spells an event type or a stream name where this module's constant belongs.

To add an event type: write ``schemas/<type>.json``, add a constant here and to ``EVENT_TYPES``, and a
row to the event table in the docs. To add a stream: a constant here, in ``STREAMS``, and the tenant's
``KafkaTopic`` in ``deploy/``.
"""
from __future__ import annotations

# ---------------------------------------------------------------- streams (vigil.<tenant>.<stream>)

#: Notes and other EHR changes to extract or react to (``vigil.ehr.*``).
EHR_EVENTS = "ehr-events"
#: What extraction found in each note (``vigil.extraction.findings``).
FINDINGS = "findings"
#: Results to deliver: triage decisions and patient messages (``vigil.triage.decision``,
#: ``vigil.scheduling.message``).
ACTIONS = "actions"
#: Follow-up requests for the scheduling agent (``vigil.triage.followup-request``).
SCHEDULING = "scheduling"
#: What became of delivered results, in order per patient: the Task writeback wrote
#: (``vigil.writeback.task-written``) and what clinicians did with it (``vigil.ehr.task-updated``,
#: ``vigil.cdshooks.feedback``).
FEEDBACK = "feedback"
#: Records a stage gave up on (``services.core.bus.failures``).
DLQ = "dlq"
#: Raw HL7 v2 messages accepted by the MLLP listener (``vigil.ingest.hl7-received``).
HL7_INBOUND = "hl7-inbound"
#: Lab results parsed from ORU messages (``vigil.ingest.lab-result``).
LAB_RESULTS = "lab-results"
#: The batch lane (``services.core.lanes``): backfill notes, their findings and decisions.
BATCH_EVENTS = "batch-events"
BATCH_FINDINGS = "batch-findings"
BATCH_DECISIONS = "batch-decisions"

#: Every stream a tenant has (its topics are created from this list, never by broker auto-create).
STREAMS: tuple[str, ...] = (EHR_EVENTS, FINDINGS, ACTIONS, SCHEDULING, FEEDBACK, DLQ, HL7_INBOUND, LAB_RESULTS,
                            BATCH_EVENTS, BATCH_FINDINGS, BATCH_DECISIONS)

# ---------------------------------------------------------------- event types (schemas/<type>.json)

RESOURCE_CHANGED = "vigil.ehr.resource-changed"
TASK_UPDATED = "vigil.ehr.task-updated"
EXTRACTION_FINDINGS = "vigil.extraction.findings"
TRIAGE_DECISION = "vigil.triage.decision"
FOLLOWUP_REQUEST = "vigil.triage.followup-request"
SCHEDULING_MESSAGE = "vigil.scheduling.message"
TASK_WRITTEN = "vigil.writeback.task-written"
HL7_RECEIVED = "vigil.ingest.hl7-received"
LAB_RESULT = "vigil.ingest.lab-result"
CDS_FEEDBACK = "vigil.cdshooks.feedback"

#: Every event type; each has exactly one schema file, ``schemas/<type>.json``.
EVENT_TYPES: tuple[str, ...] = (RESOURCE_CHANGED, TASK_UPDATED, EXTRACTION_FINDINGS, TRIAGE_DECISION,
                                FOLLOWUP_REQUEST, SCHEDULING_MESSAGE, TASK_WRITTEN, HL7_RECEIVED, LAB_RESULT,
                                CDS_FEEDBACK)


def schema_file(event_type: str) -> str:
    """The file in ``schemas/`` that holds ``event_type``'s payload schema."""
    return f"{event_type}.json"
