"""writeback: triage decisions become FHIR writes in the EHR (Task, evidence, Provenance,
AuditEvent), exactly once (by the EHR identifiers) and read-back verified. See ``handler``,
``writer``, ``resources``. Writeback owns no table."""
