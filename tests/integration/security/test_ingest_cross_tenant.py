"""Ingest's notification receiver: ``/notify/<tenant>`` accepts only that tenant's channel token
(and, when present, that tenant's body signature); a notification that names another
tenant's resource publishes nothing. Real broker, PostgreSQL and EHR sandbox (the ingest
fixtures of tests/integration/ingest)."""
from __future__ import annotations

import base64
import json
import uuid

import httpx

from services.core.secrets import SecretSettings
from services.core.tenancy import Registry, Tenant
from services.ingest.receiver import auth
from services.ingest.receiver.app import ReceiverContext, create_app
from tests.fixtures.adversarial import other_ehr  # noqa: F401  (fixture)
from tests.integration.ingest.conftest import ingest, ingest_admin  # noqa: F401  (fixtures)
from tests.integration.ingest.notify import notification

SECRETS = SecretSettings.from_env({"VIGIL_ENV": "test"})


def _headers(token_tenant: str, body: bytes, sign_tenant: str | None = None, signed_body: bytes | None = None) -> dict:
    out = {"Content-Type": "application/fhir+json",
           "Authorization": f"Bearer {auth.channel_token(SECRETS, token_tenant)}"}
    if sign_tenant is not None:
        out[auth.SIGNATURE_HEADER] = auth.sign(SECRETS, sign_tenant, body if signed_body is None else signed_body)
    return out


async def test_notify_needs_the_routes_own_tenant_credentials(ingest, other_ehr, tmp_path, adversary):
    a = ingest.tenant
    b_id, b_client, _ = other_ehr
    b = Tenant(id=b_id, display_name="victim", partitions=4, mode="active", hl7_facilities=("BRAVOFAC",),
               settings={})  # notify_auth defaults to "signature"
    registry = Registry(tmp_path / "two.toml", [a, b])
    b_doc = (await b_client.create({
        "resourceType": "DocumentReference", "status": "current",
        "subject": {"reference": "Patient/p-bravo"},
        "content": [{"attachment": {"contentType": "text/plain",
                                    "data": base64.b64encode(b"Bravo clinic note: colitis grade 2.").decode()}}]
    })).resource
    app = create_app(ReceiverContext(registry, SECRETS, ingest.handler))
    handshake = json.dumps(notification("sub-x", "handshake", since=0, status="requested")).encode()
    stolen = json.dumps(notification("sub-x", "event-notification", since=1, events=[(1, b_doc)],
                                     content="id-only")).encode()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest") as http:
        ok = await http.post(f"/notify/{a.id}", content=handshake, headers=_headers(a.id, handshake, a.id))
        assert ok.status_code == 200, ok.text  # the control case
        for name, path, headers in [
            ("ingest: /notify/A with tenant B's channel token", a.id, _headers(b_id, handshake)),
            ("ingest: /notify/B with tenant A's channel token", b_id, _headers(a.id, handshake, a.id)),
            ("ingest: /notify/A with A's token and B's HMAC signature", a.id, _headers(a.id, handshake, b_id)),
            ("ingest: /notify/B with B's token but A's HMAC signature", b_id, _headers(b_id, handshake, a.id)),
            ("ingest: /notify/A with a signature over another body", a.id,
             _headers(a.id, handshake, a.id, signed_body=stolen)),
            ("ingest: /notify/A without any token", a.id, {"Content-Type": "application/fhir+json"}),
        ]:
            response = await http.post(f"/notify/{path}", content=handshake, headers=headers)
            adversary.check(name, response.status_code == 401, f"HTTP {response.status_code}")
        response = await http.post(f"/notify/{a.id}", content=stolen, headers=_headers(a.id, stolen, a.id))
        adversary.check("ingest: notification to A naming B's DocumentReference (id-only)",
                        response.status_code >= 400 or "published=0" in response.text,
                        f"HTTP {response.status_code}")
        unknown = "t" + uuid.uuid4().hex[:12]
        response = await http.post(f"/notify/{unknown}", content=handshake,
                                   headers=_headers(unknown, handshake, unknown))
        adversary.check("ingest: /notify/<unregistered tenant> with a token derived for it",
                        response.status_code == 404, f"HTTP {response.status_code}")
    published = await ingest.events(want=1, timeout=3, settle=0)
    assert published == [], [e.type for e in published]
