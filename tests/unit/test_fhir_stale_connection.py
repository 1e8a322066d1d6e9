"""A read over a keep-alive connection the server had closed is sent once more; a write is not."""
from __future__ import annotations

import httpx
import pytest

from services.core.errors import RetryableError
from services.core.fhir import FhirClient


def client_with(failures: int, seen: list) -> FhirClient:
    state = {"left": failures}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        if state["left"]:
            state["left"] -= 1
            raise httpx.ReadError("connection reset by peer", request=request)
        return httpx.Response(200, json={"resourceType": "Patient", "id": "p1"})
    fhir = FhirClient("http://ehr.test/fhir/t1")
    fhir._http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return fhir


async def test_a_read_on_a_stale_connection_is_sent_once_more():
    seen: list = []
    fhir = client_with(1, seen)
    assert (await fhir.read("Patient", "p1"))["id"] == "p1"
    assert seen == ["GET", "GET"]


async def test_a_read_that_fails_twice_is_a_retryable_error():
    seen: list = []
    with pytest.raises(RetryableError):
        await client_with(2, seen).read("Patient", "p1")
    assert seen == ["GET", "GET"]


async def test_a_write_is_not_sent_twice():
    seen: list = []
    with pytest.raises(RetryableError):
        await client_with(1, seen).request("POST", "Patient", json_body={"resourceType": "Patient"})
    assert seen == ["POST"]


async def test_type_and_system_level_urls_are_parsed_once_and_requests_reach_the_same_urls():
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset", "entry": []})
    fhir = FhirClient("http://ehr.test/fhir/t1", transport=httpx.MockTransport(handler))
    for _ in range(2):
        await fhir.transaction({"resourceType": "Bundle", "type": "batch", "entry": []})
        await fhir.search("Task", {"identifier": "s|1"})
        await fhir.read("Patient", "p1")
    assert seen == ["http://ehr.test/fhir/t1/", "http://ehr.test/fhir/t1/Task?identifier=s%7C1",
                    "http://ehr.test/fhir/t1/Patient/p1"] * 2
    assert set(fhir._urls) == {"", "Task"}  # noqa: SLF001  (instance-level URLs are not kept)
    await fhir.close()
