"""Ingest's PostgreSQL state: every table has tenant row-level security (``services.core.tenantdb``)."""
