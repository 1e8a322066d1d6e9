"""The EHR sandbox's SMART clients: a credential of one tenant, or a weakened credential, gets
nothing from another tenant's EHR (401/403/404 with an OperationOutcome, never data).

Two tenant EHRs on the shared sandbox; every attack goes through the ``adversary`` counter."""
from __future__ import annotations

import time
import uuid

import httpx
import jwt

from services.core.errors import NotFoundError, PermissionDeniedError, UnauthenticatedError
from tests.fixtures.adversarial import other_ehr  # noqa: F401  (fixture)

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _patient(family: str) -> dict:
    return {"resourceType": "Patient", "name": [{"family": family, "given": ["Adversary"]}],
            "identifier": [{"system": "urn:test:security", "value": uuid.uuid4().hex}]}


async def _token_url(http: httpx.AsyncClient, base: str) -> str:
    return (await http.get(f"{base}/.well-known/smart-configuration")).json()["token_endpoint"]


def _assertion(creds, aud: str, *, now: int | None = None, lifetime: int = 240, jti: str | None = None) -> str:
    now = int(time.time()) if now is None else now
    claims = {"iss": creds.client_id, "sub": creds.client_id, "aud": aud, "iat": now, "exp": now + lifetime,
              "jti": jti or uuid.uuid4().hex}
    return jwt.encode(claims, creds.private_key_pem, algorithm=creds.alg,
                      headers={"kid": creds.kid} if creds.kid else None)


async def _token(http: httpx.AsyncClient, url: str, assertion: str, scope: str = "system/*.rs") -> httpx.Response:
    return await http.post(url, data={"grant_type": "client_credentials", "scope": scope,
                                      "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion})


def _refused(response: httpx.Response) -> None:
    """Raise the error a client sees for a refused token request (401 -> UnauthenticatedError)."""
    if response.status_code == 401:
        raise UnauthenticatedError(f"token endpoint: HTTP 401 ({response.json().get('error')})")
    assert response.status_code != 200, "a token was issued"
    raise PermissionDeniedError(f"token endpoint: HTTP {response.status_code}")


async def test_tokens_of_one_tenant_open_nothing_in_another(ehr_tenant, other_ehr, adversary):
    b_tenant, b_client, _ = other_ehr
    a_client = ehr_tenant.client
    b_patient = (await b_client.create(_patient("Bravo"))).id
    a_token = await a_client.access_token()
    b_base = b_client.base_url
    bearer = {"Authorization": f"Bearer {a_token}"}
    async with httpx.AsyncClient(timeout=10) as http:
        for name, method, path, body in [
            ("ehr: tenant A's SMART token reads B's patient on B's base URL", "GET", f"Patient/{b_patient}", None),
            ("ehr: tenant A's SMART token searches B's base URL", "GET", "Patient?_count=5", None),
            ("ehr: tenant A's SMART token reads B's history", "GET", f"Patient/{b_patient}/_history", None),
            ("ehr: tenant A's SMART token creates on B's base URL", "POST", "Patient", _patient("Injected")),
            ("ehr: tenant A's SMART token posts a transaction to B", "POST", "",
             {"resourceType": "Bundle", "type": "transaction",
              "entry": [{"resource": _patient("Injected"), "request": {"method": "POST", "url": "Patient"}}]}),
        ]:
            response = await http.request(method, f"{b_base}/{path}".rstrip("/"), json=body, headers=bearer)
            adversary.check(name, response.status_code == 401
                            and response.json().get("resourceType") == "OperationOutcome",
                            f"HTTP {response.status_code}")

        # the tenant claim of A's token edited to B (signature kept)
        header, payload, signature = a_token.split(".")
        claims = jwt.decode(a_token, options={"verify_signature": False})
        forged_payload = jwt.utils.base64url_encode(
            jwt.api_jws.json.dumps({**claims, "tenant": b_tenant}).encode()).decode()
        forged = ".".join((header, forged_payload, signature))
        response = await http.get(f"{b_base}/Patient/{b_patient}", headers={"Authorization": f"Bearer {forged}"})
        adversary.check("ehr: access token with its tenant claim edited to B", response.status_code == 401,
                        f"HTTP {response.status_code}")

    # B's ids through A's own EHR: not found / empty, never B's resource
    with adversary.attempt("ehr: B's patient id read through A's base URL", NotFoundError):
        await a_client.read("Patient", b_patient)
    with adversary.attempt("ehr: B's patient id vread through A's base URL", NotFoundError):
        await a_client.vread("Patient", b_patient, 1)
    found = await a_client.search("Patient", {"_id": b_patient})
    adversary.check("ehr: search _id=<B's patient> through A", found == [], f"{len(found)} results")
    history = await a_client.history("Patient", b_patient)
    adversary.check("ehr: history of B's patient through A", not history.get("entry"),
                    f"{len(history.get('entry') or [])} entries")
    # PUT with B's id on A creates A's own resource; B's is untouched
    await a_client.update({**_patient("Overwrite"), "id": b_patient})
    still = await b_client.read("Patient", b_patient)
    adversary.check("ehr: PUT of B's patient id through A leaves B's resource unchanged",
                    still["name"][0]["family"] == "Bravo" and still["meta"]["versionId"] == "1",
                    f"B's family {still['name'][0]['family']}, version {still['meta']['versionId']}")


async def test_client_assertions_are_bound_to_their_tenant_and_used_once(ehr_tenant, other_ehr, adversary):
    b_tenant, b_client, b_creds = other_ehr
    a_creds = ehr_tenant.credentials
    async with httpx.AsyncClient(timeout=10) as http:
        a_url = await _token_url(http, ehr_tenant.base_url)
        b_url = await _token_url(http, b_client.base_url)
        assert (await _token(http, a_url, _assertion(a_creds, a_url))).status_code == 200  # the control case

        lonely = await ehr_tenant.new_client("only-on-a-" + uuid.uuid4().hex[:6], ["system/*.rs"], start=False)
        attacks = [
            ("ehr: another tenant's client_id at B's token endpoint (A-only client)",
             b_url, _assertion(lonely.credentials, b_url)),
            ("ehr: B's client_id with an assertion signed by A's key", b_url,
             jwt.encode({"iss": b_creds.client_id, "sub": b_creds.client_id, "aud": b_url, "iat": int(time.time()),
                         "exp": int(time.time()) + 240, "jti": uuid.uuid4().hex}, a_creds.private_key_pem,
                        algorithm=a_creds.alg, headers={"kid": b_creds.kid} if b_creds.kid else None)),
            ("ehr: forged aud (A's assertion naming B's token URL, sent to A)", a_url, _assertion(a_creds, b_url)),
            ("ehr: forged aud (B's assertion naming A's token URL, sent to B)", b_url, _assertion(b_creds, a_url)),
            ("ehr: expired client assertion", a_url, _assertion(a_creds, a_url, now=int(time.time()) - 3600)),
            ("ehr: client assertion living longer than 5 minutes", a_url,
             _assertion(a_creds, a_url, lifetime=3600)),
            ("ehr: unsigned client assertion (alg none)", a_url,
             jwt.encode({"iss": a_creds.client_id, "sub": a_creds.client_id, "aud": a_url, "iat": int(time.time()),
                         "exp": int(time.time()) + 240, "jti": uuid.uuid4().hex}, None, algorithm="none")),
        ]
        for name, url, assertion in attacks:
            with adversary.attempt(name, UnauthenticatedError):
                _refused(await _token(http, url, assertion))

        replayed = _assertion(a_creds, a_url)
        assert (await _token(http, a_url, replayed)).status_code == 200
        with adversary.attempt("ehr: replayed client assertion jti", UnauthenticatedError):
            _refused(await _token(http, a_url, replayed))
        # same jti value at the other tenant's endpoint, by that tenant's own client: a separate cache,
        # but the attacker still cannot sign for B
        with adversary.attempt("ehr: A's used assertion replayed at B's token endpoint", UnauthenticatedError):
            _refused(await _token(http, b_url, replayed))


async def test_read_search_scope_cannot_write(ehr_tenant, adversary):
    reader = await ehr_tenant.new_client("reader-" + uuid.uuid4().hex[:6], ["system/*.rs"],
                                         request_scope="system/*.cruds")
    await reader.access_token()
    assert reader.granted_scope == "system/*.rs", reader.granted_scope  # the request asked for more
    mine = (await ehr_tenant.client.create(_patient("Alpha"))).id
    with adversary.attempt("ehr: system/*.rs token creates", PermissionDeniedError):
        await reader.create(_patient("Written"))
    with adversary.attempt("ehr: system/*.rs token updates", PermissionDeniedError):
        await reader.update({**_patient("Changed"), "id": mine})
    with adversary.attempt("ehr: system/*.rs token deletes", PermissionDeniedError):
        await reader.delete("Patient", mine)
    with adversary.attempt("ehr: system/*.rs token writes inside a transaction bundle", PermissionDeniedError):
        await reader.transaction({"resourceType": "Bundle", "type": "transaction",
                                  "entry": [{"resource": _patient("Written"),
                                             "request": {"method": "POST", "url": "Patient"}}]})
    assert (await ehr_tenant.client.read("Patient", mine))["meta"]["versionId"] == "1"
