"""FHIR Bulk Data Access $export: durable jobs, snapshots of the version history, the operations."""
