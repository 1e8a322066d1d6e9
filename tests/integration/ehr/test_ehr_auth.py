"""SMART Backend Services: discovery, the token endpoint, and scopes enforced on every request."""
from __future__ import annotations

import time
import uuid

import httpx
import jwt
import pytest

from services.core.errors import PermissionDeniedError, UnauthenticatedError
from services.core.fhir import FhirClient, SmartCredentials, new_client_key

pytestmark = pytest.mark.integration
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def assertion(creds: SmartCredentials, aud: str, *, lifetime: int = 120, jti: str | None = None, alg=None) -> str:
    now = int(time.time())
    return jwt.encode({"iss": creds.client_id, "sub": creds.client_id, "aud": aud, "exp": now + lifetime,
                       "jti": jti or uuid.uuid4().hex}, creds.private_key_pem, algorithm=alg or creds.alg,
                      headers={"kid": creds.kid})


async def token_request(url: str, client_assertion: str, scope: str = "system/*.rs") -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.post(url, data={"grant_type": "client_credentials", "scope": scope,
                                          "client_assertion_type": ASSERTION_TYPE,
                                          "client_assertion": client_assertion})


async def test_discovery_and_es384_and_rs384_clients(ehr_tenant):
    async with httpx.AsyncClient() as http:
        config = (await http.get(f"{ehr_tenant.base_url}/.well-known/smart-configuration")).json()
    assert config["token_endpoint"] == f"{ehr_tenant.base_url}/auth/token"
    assert set(config["token_endpoint_auth_signing_alg_values_supported"]) == {"RS384", "ES384"}
    assert config["grant_types_supported"] == ["client_credentials"]
    for alg in ("RS384", "ES384"):
        client = await ehr_tenant.new_client(f"app-{alg.lower()}", ["system/Patient.cruds"], alg=alg)
        created = await client.create({"resourceType": "Patient", "name": [{"family": alg}]})
        assert (await client.read("Patient", created.id))["name"][0]["family"] == alg


async def test_token_endpoint_rejects_bad_assertions(ehr_tenant):
    creds = ehr_tenant.credentials
    url = f"{ehr_tenant.base_url}/auth/token"
    ok = await token_request(url, assertion(creds, url))
    assert ok.status_code == 200 and ok.json()["expires_in"] <= 300 and ok.json()["token_type"] == "bearer"
    assert ok.json()["scope"] == "system/*.rs"
    # replayed jti
    jti = uuid.uuid4().hex
    assert (await token_request(url, assertion(creds, url, jti=jti))).status_code == 200
    replay = await token_request(url, assertion(creds, url, jti=jti))
    assert replay.status_code == 401 and "jti" in replay.json()["error_description"]
    # exp too far in the future
    far = await token_request(url, assertion(creds, url, lifetime=600))
    assert far.status_code == 401 and far.json()["error"] == "invalid_client"
    # expired
    assert (await token_request(url, assertion(creds, url, lifetime=-120))).status_code == 401
    # wrong audience
    assert (await token_request(url, assertion(creds, "https://elsewhere/token"))).status_code == 401
    # signed by a key that is not registered
    pem, _ = new_client_key("RS384", kid=creds.kid)
    forged = SmartCredentials(creds.client_id, pem, "RS384", creds.kid)
    assert (await token_request(url, assertion(forged, url))).status_code == 401
    # HS256 (or none) is not an accepted algorithm
    hs = jwt.encode({"iss": creds.client_id, "sub": creds.client_id, "aud": url, "exp": int(time.time()) + 60,
                     "jti": "x"}, "secret-secret-secret-secret-secret", algorithm="HS256")
    assert (await token_request(url, hs)).status_code == 401
    # unknown client, unsupported scope syntax, scopes outside the registration
    assert (await token_request(url, assertion(SmartCredentials("who", creds.private_key_pem, creds.alg, kid=creds.kid), url))
            ).status_code == 401
    assert (await token_request(url, assertion(creds, url), scope="patient/*.read")).json()["error"] == "invalid_scope"
    narrow = await ehr_tenant.new_client("narrow", ["system/Task.cu"], start=False)
    refused = await token_request(url, assertion(narrow.credentials, url), scope="system/Patient.rs")
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_scope"


async def test_scopes_are_enforced_on_every_request(ehr_tenant):
    writer = await ehr_tenant.new_client("writeback", ["system/Task.cu", "system/Observation.c"],
                                         request_scope="system/Task.cu system/Observation.c")
    await writer.access_token()
    assert writer.granted_scope == "system/Task.cu system/Observation.c"
    task = await writer.create({"resourceType": "Task", "status": "requested", "intent": "proposal"})
    await writer.update({**task.resource, "status": "accepted"})
    with pytest.raises(PermissionDeniedError) as no_read:
        await writer.read("Task", task.id)
    assert no_read.value.status == 403 and no_read.value.outcome["issue"][0]["code"] == "forbidden"
    with pytest.raises(PermissionDeniedError):
        await writer.search("Task")
    with pytest.raises(PermissionDeniedError):
        await writer.create({"resourceType": "Patient"})
    with pytest.raises(PermissionDeniedError):
        await writer.delete("Task", task.id)
    # a transaction is checked entry by entry: one forbidden entry refuses the whole bundle
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Task", "status": "requested", "intent": "proposal"},
         "request": {"method": "POST", "url": "Task"}},
        {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}}]}
    with pytest.raises(PermissionDeniedError):
        await writer.transaction(bundle)
    # read-only wildcard: reads and searches everything, writes nothing
    reader = await ehr_tenant.new_client("reader", ["system/*.rs"])
    assert (await reader.read("Task", task.id))["status"] == "accepted"
    assert len(await reader.search("Task")) == 1
    with pytest.raises(PermissionDeniedError):
        await reader.create({"resourceType": "Task", "status": "requested", "intent": "proposal"})
    # v1 scopes map to the same permissions
    v1 = await ehr_tenant.new_client("v1", ["system/*.read"])
    assert (await v1.read("Task", task.id))["id"] == task.id


async def test_missing_and_bad_tokens_get_401_outcomes(ehr_tenant):
    async with httpx.AsyncClient() as http:
        for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic abc"}):
            response = await http.get(f"{ehr_tenant.base_url}/Patient", headers=headers)
            assert response.status_code == 401
            assert response.json()["resourceType"] == "OperationOutcome"
            assert response.headers["www-authenticate"].startswith("Bearer")
        # metadata is public, as FHIR requires
        assert (await http.get(f"{ehr_tenant.base_url}/metadata")).status_code == 200
    anonymous = FhirClient(ehr_tenant.base_url)
    try:
        with pytest.raises(UnauthenticatedError):
            await anonymous.read("Patient", "x")
    finally:
        await anonymous.close()


async def test_admin_api_needs_the_platform_secret(ehr_server, ehr_tenant):
    async with httpx.AsyncClient() as http:
        for headers in ({}, {"Authorization": "Bearer wrong-secret-wrong-secret"}):
            response = await http.post(f"{ehr_server.url}/admin/tenants", json={"id": "sneaky"}, headers=headers)
            assert response.status_code == 401
            response = await http.put(f"{ehr_server.url}/admin/tenants/{ehr_tenant.tenant}/clients/evil",
                                      json={"jwks": {"keys": []}, "scopes": ["system/*.*"]}, headers=headers)
            assert response.status_code == 401
        auth = {"Authorization": f"Bearer {ehr_server.admin_secret}"}
        bad_key = await http.put(f"{ehr_server.url}/admin/tenants/{ehr_tenant.tenant}/clients/x",
                                 json={"jwks": {"keys": [{"kty": "RSA", "d": "secret"}]}, "scopes": ["system/*.rs"]},
                                 headers=auth)
        assert bad_key.status_code == 400
        bad_tenant = await http.post(f"{ehr_server.url}/admin/tenants", json={"id": "Bad Tenant!"}, headers=auth)
        assert bad_tenant.status_code == 400 and bad_tenant.json()["resourceType"] == "OperationOutcome"
