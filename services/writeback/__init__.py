"""writeback: triage decisions become FHIR writes in the EHR (Task, evidence, Provenance,
AuditEvent), exactly once and read-back verified; the feedback stage turns clinicians' Task
actions into labels. See ``handler`` (decisions), ``feedback`` (labels), ``writer``, ``resources``."""
