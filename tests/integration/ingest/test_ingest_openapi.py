"""The notification receiver conforms to its OpenAPI document under schemathesis (bounded examples per
operation), with the real handler behind it: no 5xx, and the documented status codes, content types,
headers and response bodies."""
from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import httpx
import pytest

from services.core.integration import parse as parse_profile
from services.core.secrets import SecretSettings
from services.core.tenancy import Registry
from services.ingest.receiver import auth
from services.ingest.receiver.app import ReceiverContext, create_app

pytestmark = pytest.mark.integration
SECRETS = SecretSettings.from_env({"VIGIL_ENV": "test"})
EXAMPLES_PER_OPERATION = 100


async def test_the_receiver_conforms_to_its_openapi_document(ingest, tmp_path):
    import schemathesis  # here: every worker collects this module, few run it

    from tests.fixtures.conformance import run_schemathesis

    # Both subscription styles, so the R4 route runs its handler (and its catch-up search) too.
    profile = parse_profile(ingest.tenant.id, {"triggers": ["backport-topic", "r4-criteria", "hl7v2-feed"]})
    registry = Registry(tmp_path / "tenants.toml", [replace(ingest.tenant, integration=profile)])
    app = create_app(ReceiverContext(registry, SECRETS, ingest.handler))
    tenant = ingest.tenant.id
    loop = asyncio.get_running_loop()
    token = {"Authorization": f"Bearer {auth.channel_token(SECRETS, tenant)}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest",
                                 timeout=30) as http:
        response = await http.get("/openapi.json")
        assert response.status_code == 200 and set(response.json()["paths"]) == {
            "/notify/{tenant}", "/notify/{tenant}/r4/{resource_type}",
            "/notify/{tenant}/r4/{resource_type}/{path_type}/{rid}", "/healthz", "/openapi.json"}
        schema = schemathesis.openapi.from_dict(response.json())

        async def send_async(case) -> httpx.Response:
            kwargs = case.as_transport_kwargs(base_url="http://ingest", headers=token)
            content = json.dumps(kwargs["json"]).encode() if "json" in kwargs else kwargs.get("data")
            headers = dict(kwargs["headers"])
            if "json" in kwargs:
                headers.setdefault("Content-Type", "application/json")
            if isinstance(content, (bytes, str)) and not any(k.lower() in (auth.SIGNATURE_HEADER,
                                                                            auth.MEDPLUM_SIGNATURE_HEADER)
                                                             for k in headers):
                # as the tenant's EHR would: the body signed (the tenant requires signatures)
                headers[auth.SIGNATURE_HEADER] = auth.sign(SECRETS, tenant, content if isinstance(content, bytes)
                                                           else content.encode())
            return await http.request(kwargs["method"], kwargs["url"], params=kwargs.get("params"),
                                      headers=headers, content=content)

        def send(case) -> httpx.Response:
            return asyncio.run_coroutine_threadsafe(send_async(case), loop).result(60)

        cases, failures = await asyncio.to_thread(run_schemathesis, schema, EXAMPLES_PER_OPERATION, send,
                                                  path_parameters={"tenant": tenant})
    assert cases >= EXAMPLES_PER_OPERATION
    assert not failures, "\n\n".join(failures)
