"""HL7 v2: parsing, validation, mapping to FHIR R4 and acknowledgements (no I/O here)."""
