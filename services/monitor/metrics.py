"""Prometheus metrics of the monitor. Labels: tenant, category, version (model or rule-set
version), and small closed sets (kind, outcome, reason code, drift dimension). Never PHI."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

TCV = ("tenant", "category", "version")

EVENTS = Counter("vigil_monitor_events_total", "Events the monitor consumed", ("tenant", "type"))
REJECTED = Counter("vigil_monitor_rejected_total", "Events the monitor could not use", ("tenant", "reason"))
NOTES = Counter("vigil_monitor_notes_total", "Notes extracted", ("tenant", "version"))
FINDINGS = Counter("vigil_monitor_findings_total", "Findings", TCV)
GRADES = Counter("vigil_monitor_findings_by_grade_total", "Findings by CTCAE grade", (*TCV, "grade"))
DECISIONS = Counter("vigil_monitor_decisions_total", "Triage decisions", (*TCV, "kind"))
TASKS = Counter("vigil_monitor_tasks_total", "Inbox Tasks by outcome (created, accepted, overridden, ignored)",
                (*TCV, "outcome"))
OVERRIDE_REASONS = Counter("vigil_monitor_override_reasons_total", "Overrides by reason code", (*TCV, "reason"))
OVERRIDE_RATE = Gauge("vigil_monitor_override_rate", "Overridden / (accepted + overridden) in the trailing window",
                      TCV)
TIME_TO_ALERT = Histogram("vigil_monitor_time_to_alert_seconds", "Note time -> Task created", TCV,
                          buckets=(60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400, 172800, 604800))
TTA_QUANTILE = Gauge("vigil_monitor_time_to_alert_quantile_seconds", "p50 / p95 of the current window",
                     (*TCV, "quantile"))
WINDOW_VALUE = Gauge("vigil_monitor_window_value", "Value of the newest tumbling window", (*TCV, "metric"))
LLM_TOKENS = Gauge("vigil_monitor_llm_tokens", "LLM tokens today (UTC)", ("tenant", "version", "kind"))
LLM_COST = Gauge("vigil_monitor_llm_cost_usd", "LLM cost today (UTC), US dollars", ("tenant", "version"))
PSI = Gauge("vigil_monitor_psi", "Population stability index, current vs baseline period", ("tenant", "dimension"))
GOLD_F1 = Gauge("vigil_monitor_gold_f1", "Micro F1 of the latest gold-set re-score", ("tenant", "version"))
ALERTS = Counter("vigil_monitor_alerts_total", "Alerts raised", ("tenant", "kind", "dimension"))
ALERT_ACTIVE = Gauge("vigil_monitor_alert_active", "1 while the latest check of this kind is over its threshold",
                     ("tenant", "kind", "dimension"))
DUPLICATES = Counter("vigil_monitor_duplicates_total", "Events already counted (same event id): nothing changed",
                     ("tenant", "type"))
MONITORED = Gauge("vigil_monitor_tenant_monitored", "1 while the tenant's streams are subscribed, 0 once removed",
                  ("tenant",))
LABELS = Counter("vigil_monitor_labels_total", "Clinician labels stored (label store)", ("tenant", "source", "action"))
