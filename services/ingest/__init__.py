"""Ingest: EHR triggers (FHIR Subscription notifications, HL7v2 over MLLP, backfill) into Kafka."""
