"""Polling metrics, labelled by tenant (and error code) only: never by patient."""
from __future__ import annotations

from prometheus_client import Counter, Gauge

WATCHED = Gauge("vigil_ingest_poll_patients_watched", "Patients on the tenant's polling watch list", ("tenant",))
POLLS = Counter("vigil_ingest_poll_polls_total", "Patient polls (one search, all its pages)", ("tenant",))
REQUESTS = Counter("vigil_ingest_poll_requests_total", "EHR requests sent by the poller", ("tenant",))
NOTES = Counter("vigil_ingest_poll_notes_total", "Note versions found by polling and published", ("tenant",))
DUPLICATES = Counter("vigil_ingest_poll_duplicates_total",
                     "Note versions found by polling that another path (or an earlier round) had published",
                     ("tenant",))
ERRORS = Counter("vigil_ingest_poll_errors_total", "Failed patient polls and watch-list refreshes, by error code",
                 ("tenant", "code"))
ROUNDS = Counter("vigil_ingest_poll_rounds_total", "Completed polling rounds", ("tenant",))
ROUND_SECONDS = Gauge("vigil_ingest_poll_round_seconds", "Duration of the tenant's last polling round", ("tenant",))
LAST_ROUND = Gauge("vigil_ingest_poll_last_round_timestamp", "Unix time the tenant's last round ended", ("tenant",))
