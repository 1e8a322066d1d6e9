"""How the tools service reaches one tenant's EHR, from the tenant registry.

    [tenants.<id>]
    ehr_base_url = ""                                # empty: <VIGIL_EHR_URL>/fhir/<tenant>
    [tenants.<id>.settings]
    fhir_client_id = "vigil-tools"                   # SMART Backend Services client id
    fhir_private_key_file = "/run/secrets/<id>-fhir.pem"   # its private key (PEM), RS384 or ES384
    fhir_key_alg = "RS384"                           # RS384 | ES384 (default: the key's own)
    fhir_key_id = "..."                              # optional kid of the registered JWK
    fhir_scope = "..."                               # scopes requested (default DEFAULT_SCOPE below)
                                                     # scheduling writes need e.g. system/*.cruds
    fhir_token_url = ""                              # optional; discovered from .well-known otherwise

Without ``fhir_client_id`` the tenant's EHR is called without authentication, which is refused
when VIGIL_ENV=prod.
"""
from __future__ import annotations


#: Reads for agents, plus exactly the writes the scheduling tools make: $book (Appointment create,
#: Slot update), cancel (Appointment/Slot update), messages (Communication) and staff Tasks.
DEFAULT_SCOPE = ("system/*.rs system/Appointment.cu system/Slot.u system/Communication.c system/Task.c")
PREFIX = "fhir"

