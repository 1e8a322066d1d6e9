"""How writeback reaches one tenant's EHR, from the tenant registry (its own SMART client).

    [tenants.<id>.settings]
    writeback_client_id = "vigil-writeback"              # SMART Backend Services client id
    writeback_private_key_file = "/run/secrets/<id>-writeback.pem"   # PEM, RS384 or ES384
    writeback_key_alg = "RS384"                          # RS384 | ES384 (default: the key's own)
    writeback_key_id = "..."                             # optional kid of the registered JWK
    writeback_scope = "..."                              # default WRITE_SCOPE below
    writeback_token_url = ""                             # optional; else .well-known discovery

Without ``writeback_client_id`` the EHR is called without authentication, which is refused
when VIGIL_ENV=prod (a ConfigError: the decision goes to the DLQ, nothing is written).
"""
from __future__ import annotations


#: What writeback needs: search/read Tasks and evidence (idempotency + read-back), write them.
WRITE_SCOPE = ("system/Task.crus system/Observation.crs system/DetectedIssue.crs system/Provenance.crs "
               "system/AuditEvent.cr system/Device.crs system/DocumentReference.r")
PREFIX = "writeback"

