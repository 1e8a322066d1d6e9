"""Per-patient polling: note changes for EHRs that send no notifications (Epic-like sites).

For a tenant whose integration profile has the ``patient-poll`` trigger, ingest keeps a watch list
(``integration.watch_list``: ``checkpoint-inhibitors``, refreshed from the EHR's active
MedicationRequests, or ``uploaded``, a list the tenant uploads with ``vigil poll watchlist upload``)
and, every ``poll_interval_s``, asks the EHR for each watched patient's DocumentReferences changed
since that patient's cursor. New versions are claimed in the shared ledger (so a version the
subscription, HL7 or backfill path already published is skipped) and published on ``ehr-events``
as ``vigil.ehr.resource-changed`` with origin ``poll``, in the same transaction that moves the
cursor. Each tenant runs its own task with its own token bucket (``poll_rate_per_s``); one
patient's failure is logged by error code and retried next round.

Modules: ``settings`` (per-tenant settings), ``bucket`` (token bucket), ``watchlist`` (building
and uploading the list), ``patient`` (one patient's poll), ``runner`` (rounds per tenant, the
task per tenant), ``metrics``.
"""
