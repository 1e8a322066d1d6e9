"""The EHR sandbox conforms to its OpenAPI document under schemathesis (bounded examples per operation):
no 5xx, and the documented status codes, content types, headers and response bodies."""
from __future__ import annotations

import asyncio

import httpx
import pytest


pytestmark = pytest.mark.integration
EXAMPLES_PER_OPERATION = 10


async def test_the_sandbox_conforms_to_its_openapi_document(ehr_server, ehr_tenant):
    import schemathesis  # here: every worker collects this module, few run it

    from tests.fixtures.conformance import run_schemathesis

    token = await ehr_tenant.client.access_token(force=True)
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{ehr_server.url}/openapi.json")
    assert response.status_code == 200 and response.json()["openapi"].startswith("3.")
    schema = schemathesis.openapi.from_dict(response.json())
    headers = {"Authorization": f"Bearer {token}"}
    cases, failures = await asyncio.to_thread(
        run_schemathesis, schema, EXAMPLES_PER_OPERATION,
        lambda case: case.call(base_url=ehr_server.url, headers=headers, timeout=30),
        path_parameters={"tenant": ehr_tenant.tenant})
    assert cases >= EXAMPLES_PER_OPERATION * 20
    assert not failures, "\n\n".join(failures)
