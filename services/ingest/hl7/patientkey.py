"""Vigil's patient key for HL7 messages: a keyed hash of the first PID-3 identifier.

Kafka keys and index keys must keep a patient's messages together (same partition, same row)
without carrying the medical record number itself: the key is HMAC-SHA256 over (tenant,
identifier system, value) with a secret derived from the platform master key, which neither
the broker nor the database holds. A message without a patient identifier has no key.
"""
from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict

from services.core.secrets import SecretSettings
from services.ingest.hl7.mapping.common import first_identifier

LABEL = "vigil/hl7-patient-key/v1"
KEY_CHARS = 32
#: Keys of recent patients kept in memory (a feed repeats the same patients: orders, results, notes).
CACHE_SIZE = 10_000


class PatientKeys:
    def __init__(self, secrets: SecretSettings):
        self._secret = secrets.derive(LABEL)
        self._cache: OrderedDict[str, str] = OrderedDict()

    def of_identifier(self, tenant: str, system: str, value: str) -> str:
        text = f"{tenant}|{system}|{value}"
        key = self._cache.get(text)
        if key is None:
            key = "pk-" + hmac.new(self._secret, text.encode("utf-8"), hashlib.sha256).hexdigest()[:KEY_CHARS]
            self._cache[text] = key
            if len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return key

    def of_message(self, tenant: str, msg) -> str | None:
        """The key of a ``Message`` or a ``LightMessage`` (the same for both)."""
        first = first_identifier(msg)
        return None if first is None else self.of_identifier(tenant, *first)
