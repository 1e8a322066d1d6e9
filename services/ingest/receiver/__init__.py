"""FHIR Subscription (R4 Backport IG) notification receiver."""
