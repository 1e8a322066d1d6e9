"""Batch sources (OMOP NOTE tables, FHIR Bulk Data files and $export) and the batch lane that runs them."""
