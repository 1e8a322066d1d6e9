"""A batch run publishes a chunk's events before its transaction commits: extraction may read an
event whose note version is not visible in the document store yet. That is retried (it becomes
visible at the commit, or the chunk was rolled back and its retries end in the DLQ), never
dead-lettered at once; a note missing from the EHR stays a fatal not-found."""
from __future__ import annotations

import types

import pytest

from services.core.errors import NotFoundError, RetryableError, classify
from services.extraction.handler import Extraction


class MissingNote:
    """AgentClients whose GetNote answers not-found, as tools does for an unknown version."""

    def __init__(self):
        self.calls = []

    async def call(self, service, tenant, method, request):
        self.calls.append((service, method, request.source))
        raise NotFoundError("no such note version in the document store", code="note_not_found")


def event(source: str | None):
    data = {"resourceType": "DocumentReference", "action": "create", "id": "doc-1", "versionId": "1"}
    if source:
        data["source"] = source
    return types.SimpleNamespace(data=data)


async def test_a_store_note_not_visible_yet_is_retried():
    clients = MissingNote()
    with pytest.raises(RetryableError) as caught:
        await Extraction(clients, keyring=None)(event("store"), types.SimpleNamespace(tenant="acme"))
    assert caught.value.code == "note_not_visible" and classify(caught.value).retryable
    assert clients.calls == [("tools", "GetNote", "store")]


async def test_a_note_missing_from_the_ehr_stays_not_found():
    with pytest.raises(NotFoundError):
        await Extraction(MissingNote(), keyring=None)(event(None), types.SimpleNamespace(tenant="acme"))
