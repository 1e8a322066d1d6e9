"""The tools service: tenant-scoped FHIR reads for agents over gRPC."""
