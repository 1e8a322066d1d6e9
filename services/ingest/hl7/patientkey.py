"""Vigil's patient key for HL7 messages: a keyed hash of the first PID-3 identifier.

Kafka keys and index keys must keep a patient's messages together (same partition, same row)
without carrying the medical record number itself: the key is HMAC-SHA256 over (tenant,
identifier system, value) with a secret derived from the platform master key, which neither
the broker nor the database holds. A message without a patient identifier has no key.
"""
from __future__ import annotations

import hashlib
import hmac

from services.core.secrets import SecretSettings
from services.ingest.hl7.mapping.common import first_identifier

LABEL = "vigil/hl7-patient-key/v1"
KEY_CHARS = 32


class PatientKeys:
    def __init__(self, secrets: SecretSettings):
        self._secret = secrets.derive(LABEL)

    def of_identifier(self, tenant: str, system: str, value: str) -> str:
        digest = hmac.new(self._secret, f"{tenant}|{system}|{value}".encode("utf-8"), hashlib.sha256).hexdigest()
        return "pk-" + digest[:KEY_CHARS]

    def of_message(self, tenant: str, msg) -> str | None:
        """The key of a ``Message`` or a ``LightMessage`` (the same for both)."""
        first = first_identifier(msg)
        return None if first is None else self.of_identifier(tenant, *first)
