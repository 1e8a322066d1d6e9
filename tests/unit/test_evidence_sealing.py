"""Evidence quotes on the bus: schema versions 1 (plain quote, accepted from old events) and 2
(sealed quote, the only one produced); sealing and opening with a tenant data key."""
from __future__ import annotations

import copy
import os

import pytest

from services.core import crypto, evidence, schemas
from services.core.errors import ValidationError
from services.core.events import Event

FINDINGS_V1 = {"document": {"id": "d1", "versionId": "2"}, "patient": "p1", "engine": "rules", "engineVersion": "1",
               "promptHash": None, "noteTime": "2024-05-01T10:00:00Z", "reviewRequired": False,
               "findings": [{"category": "colitis", "grade": 2, "start": 0, "end": 7, "quote": "loose s",
                             "attribution": "immunotherapy", "confidence": 0.9}]}
DECISION_V1 = {"decisionId": "x", "patient": "p1", "category": "colitis", "grade": 2, "kind": "routine-task",
               "owner": None, "document": {"id": "d1", "versionId": "2"}, "engineVersion": "1", "mode": "active",
               "episodeKey": "e", "finding": {"start": 0, "end": 7, "quote": "loose s", "grade": 2,
                                              "category": "colitis"}}


class FakeKeyring:
    """The pure half of ``Keyring`` (``crypto.seal`` / ``open_sealed``) with one in-memory key per tenant."""

    def __init__(self):
        self.keys: dict[str, bytes] = {}

    async def encrypt(self, tenant, plaintext, purpose):
        return crypto.seal(self.keys.setdefault(tenant, os.urandom(32)), 1, tenant, purpose, plaintext)

    async def decrypt(self, tenant, blob, purpose):
        return crypto.open_sealed(self.keys.setdefault(tenant, os.urandom(32)), tenant, purpose, blob)


def test_version_1_is_accepted_from_old_events_but_never_produced():
    for event_type, data in (("vigil.extraction.findings", FINDINGS_V1), ("vigil.triage.decision", DECISION_V1)):
        schemas.validate(event_type, data)  # a consumer handles an old event (a replayed dead letter)
        with pytest.raises(ValidationError) as refused:
            schemas.check_outgoing(event_type, data)
        assert refused.value.code == "deprecated" and "loose s" not in str(refused.value)


async def test_sealed_payloads_validate_for_producers_and_open_for_the_tenant_only():
    keyring = FakeKeyring()
    sealed = await evidence.seal_findings(keyring, "tenanta", FINDINGS_V1)
    assert "quote" not in sealed["findings"][0] and b"loose s" not in str(sealed["findings"]).encode()
    schemas.check_outgoing("vigil.extraction.findings", sealed)
    assert await evidence.open_findings(keyring, "tenanta", sealed) == FINDINGS_V1
    with pytest.raises(crypto.DecryptionError):
        await evidence.open_findings(keyring, "tenantb", sealed)

    decision = await evidence.seal_decision(keyring, "tenanta", DECISION_V1)
    schemas.check_outgoing("vigil.triage.decision", decision)
    assert (await evidence.open_decision(keyring, "tenanta", decision)) == DECISION_V1
    # an old event opens to itself
    assert await evidence.open_decision(keyring, "tenanta", DECISION_V1) == DECISION_V1


def test_both_forms_at_once_and_neither_are_refused():
    both = copy.deepcopy(FINDINGS_V1)
    both["findings"][0]["quoteSealed"] = "AAAA"
    neither = copy.deepcopy(FINDINGS_V1)
    del neither["findings"][0]["quote"]
    for data in (both, neither):
        with pytest.raises(ValidationError):
            schemas.validate("vigil.extraction.findings", data)


async def test_seal_event_by_type_leaves_other_events_alone():
    keyring = FakeKeyring()
    ev = Event.new("vigil.extraction.findings", source="/t", tenant="tenanta", key="p1", data=FINDINGS_V1)
    sealed = await evidence.seal_event(keyring, ev)
    assert sealed.id == ev.id and "quoteSealed" in sealed.data["findings"][0]
    other = Event.new("vigil.triage.followup-request", source="/t", tenant="tenanta", key="p1", data={"x": 1})
    assert await evidence.seal_event(keyring, other) is other


async def test_a_sealed_quote_that_is_not_base64_is_a_decryption_error():
    with pytest.raises(crypto.DecryptionError):
        await evidence.open_text(FakeKeyring(), "tenanta", "not base64 !")
