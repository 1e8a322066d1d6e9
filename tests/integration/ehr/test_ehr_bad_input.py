"""Bad input gets a 4xx OperationOutcome, never a 5xx: explicit cases plus a hypothesis fuzz run."""
from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.integration
FUZZ_EXAMPLES = 120

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12)
task_fields = st.sampled_from(["status", "intent", "priority", "for", "owner", "authoredOn", "identifier", "input",
                               "note", "id", "meta", "code", "businessStatus", "restriction", "extension"])
task_like = st.fixed_dictionaries({"resourceType": st.just("Task")},
                                  optional={"status": st.sampled_from(["requested", "bogus", "", 3]),
                                            "intent": st.sampled_from(["proposal", "order", "nope", None])}) \
    .flatmap(lambda base: st.dictionaries(task_fields, json_values, max_size=4).map(lambda extra: {**base, **extra}))
bundle_like = st.fixed_dictionaries({"resourceType": st.just("Bundle"),
                                     "type": st.sampled_from(["transaction", "batch", "collection", 5]),
                                     "entry": st.lists(st.dictionaries(st.sampled_from(["request", "resource",
                                                                                        "fullUrl"]), json_values,
                                                                       max_size=3), max_size=3) | json_values})
bodies = st.one_of(json_values.map(json.dumps), task_like.map(json.dumps), bundle_like.map(json.dumps),
                   st.binary(max_size=60).map(lambda b: b.decode("latin-1")))
targets = st.sampled_from([("POST", "Task"), ("PUT", "Task/fuzz-1"), ("POST", ""), ("POST", "Appointment/$book"),
                           ("POST", "Nonsense"), ("PUT", "Task"), ("POST", "Task/_search")])
search_params = st.dictionaries(st.sampled_from(["status", "patient", "date", "_count", "identifier", "_id",
                                                 "authored-on", "owner", "_sort", "code", "x:missing", "_lastUpdated"]),
                                st.text(max_size=15), max_size=3)


def check(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        assert response.json()["resourceType"] == "OperationOutcome"


async def test_fuzzed_requests_never_get_a_5xx(ehr_tenant):
    token = await ehr_tenant.client.access_token()
    base = ehr_tenant.base_url
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}

    http = httpx.Client(timeout=30)

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(target=targets, body=bodies, params=search_params)
    def fuzz(target, body, params) -> None:
        method, path = target
        check(http.request(method, f"{base}/{path}", content=body.encode("utf-8", "surrogatepass"), headers=headers))
        check(http.get(f"{base}/Task", params=params, headers=headers))

    try:
        await asyncio.to_thread(fuzz)
    finally:
        http.close()


async def test_explicit_bad_inputs(ehr_tenant, ehr_server):
    token = await ehr_tenant.client.access_token()
    base = ehr_tenant.base_url
    auth = {"Authorization": f"Bearer {token}"}
    fhir = {**auth, "Content-Type": "application/fhir+json"}
    cases = [
        ("POST", "Task", b"{not json", fhir, 400, "structure"),
        ("POST", "Task", b"", fhir, 400, "required"),
        ("POST", "Task", json.dumps({"resourceType": "Task", "status": "invented", "intent": "order"}).encode(),
         fhir, 422, "code-invalid"),
        ("POST", "Appointment", json.dumps({"resourceType": "Appointment", "status": "maybe",
                                            "participant": [{"status": "accepted"}]}).encode(), fhir, 422,
         "code-invalid"),
        ("POST", "Task", json.dumps({"resourceType": "Task", "status": "requested", "intent": "order",
                                     "authoredOn": "yesterday"}).encode(), fhir, 422, "invalid"),
        ("POST", "Task", json.dumps({"resourceType": "Task", "status": "requested", "intent": "order",
                                     "priority": ["urgent"]}).encode(), fhir, 422, None),
        ("POST", "Task", json.dumps({"resourceType": "Task", "status": "requested", "intent": "order",
                                     "unknownElement": 1}).encode(), fhir, 422, "invalid"),
        ("POST", "Task", json.dumps({"resourceType": "Patient"}).encode(), fhir, 400, "invalid"),
        ("POST", "Spaceship", json.dumps({"resourceType": "Spaceship"}).encode(), fhir, 404, "not-supported"),
        ("POST", "Task", b"<Task/>", {**auth, "Content-Type": "application/fhir+xml"}, 415, "not-supported"),
        ("PUT", "Task/abc", json.dumps({"resourceType": "Task", "id": "xyz", "status": "requested",
                                        "intent": "order"}).encode(), fhir, 400, "invalid"),
        ("PATCH", "Task/abc", b"[]", fhir, 405, "not-supported"),
        ("GET", "Task?_count=abc", None, auth, 400, "invalid"),
        ("GET", "Task?date=ge2024-99-99", None, auth, 400, None),
        ("GET", "Task/_history/x", None, auth, 404, None),
        ("GET", "Task/bad id!", None, auth, 400, "invalid"),
    ]
    async with httpx.AsyncClient() as http:
        for method, path, body, headers, status, code in cases:
            response = await http.request(method, f"{base}/{path}", content=body, headers=headers)
            assert response.status_code == status, (method, path, response.status_code, response.text[:200])
            outcome = response.json()
            assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["diagnostics"]
            if code:
                assert outcome["issue"][0]["code"] == code, (path, outcome)
        # oversized payloads are refused before they are read in full
        huge = b'{"resourceType":"Task","note":[{"text":"' + b"x" * (8 * 1024 * 1024 + 10) + b'"}]}'
        response = await http.post(f"{base}/Task", content=huge, headers=fhir)
        assert response.status_code == 413 and response.json()["issue"][0]["code"] == "too-costly"
        # unknown tenant
        response = await http.get(f"{ehr_server.url}/fhir/no-such-tenant/Task", headers=auth)
        assert response.status_code == 404 and response.json()["resourceType"] == "OperationOutcome"
