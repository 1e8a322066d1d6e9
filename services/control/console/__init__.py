"""The control web console: DLQ browser per tenant, detail view, dry run and replay with progress.

A thin client of the control gRPC service (same credentials, same authorization, same audit):
the operator signs in with an operator token, kept in a signed session cookie.
"""
