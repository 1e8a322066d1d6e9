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
    return FhirClient("http://ehr.test/fhir/t1", transport=httpx.MockTransport(handler))


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


async def test_requests_carry_the_clients_headers_timeouts_and_query_and_errors_name_the_request():
    """The direct path sends what the httpx client would: its default headers (a caller's header
    replaces one of the same name), its timeouts, the query; a gzip body is decoded; an error
    names the method and path, never the query."""
    import gzip
    import json as jsonlib

    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/Gone/1"):
            return httpx.Response(410, json={"resourceType": "OperationOutcome", "issue": [{"code": "deleted"}]})
        body = gzip.compress(jsonlib.dumps({"resourceType": "Bundle", "type": "searchset", "entry": []}).encode())
        return httpx.Response(200, content=body, headers={"content-encoding": "gzip",
                                                          "content-type": "application/fhir+json"})
    fhir = FhirClient("http://ehr.test/fhir/t1", transport=httpx.MockTransport(handler), timeout=7.5)
    assert await fhir.search("Task", {"patient": "Patient/p 1", "status": ["ready", "requested"]}) == []
    await fhir.request("GET", "Task", headers={"Accept": "application/json", "Prefer": "x"})
    with pytest.raises(Exception) as failed:
        await fhir.read("Gone", "1")
    await fhir.close()
    first, second = seen[0], seen[1]
    assert str(first.url) == "http://ehr.test/fhir/t1/Task?patient=Patient%2Fp+1&status=ready&status=requested"
    assert first.headers["accept"] == "application/fhir+json" and "gzip" in first.headers["accept-encoding"]
    assert first.headers["user-agent"].startswith("python-httpx/")
    assert first.extensions["timeout"] == {"connect": 7.5, "read": 7.5, "write": 7.5, "pool": 7.5}
    assert second.headers.get_list("accept") == ["application/json"] and second.headers["prefer"] == "x"
    assert "HTTP 410 from GET /fhir/t1/Gone/1" in str(failed.value) and getattr(failed.value, "status") == 410
