"""Provisioning through the admin API: create a tenant EHR and register a SMART client with a
fresh key. Used by `vigil ehr seed` and the test fixtures."""
from __future__ import annotations

import httpx

from services.core.errors import from_http_status
from services.core.httpclient import async_client
from services.core.fhir import SmartCredentials, new_client_key

ALL_SCOPES = ("system/*.cruds",)


def _diagnostics(response: httpx.Response) -> str:
    """The admin API's reason for a refusal (its OperationOutcome describes the request, never PHI)."""
    try:
        text = response.json()["issue"][0]["diagnostics"]
    except (ValueError, KeyError, IndexError, TypeError):
        return ""
    return f" ({str(text)[:200]})" if text else ""


class AdminClient:
    def __init__(self, ehr_url: str, admin_secret: str, *, timeout: float = 30.0):
        self.ehr_url = ehr_url.rstrip("/")
        self._http = async_client(timeout=timeout, headers={"Authorization": f"Bearer {admin_secret}"})

    async def __aenter__(self) -> "AdminClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        response = await self._http.request(method, f"{self.ehr_url}{path}", json=body)
        if response.status_code >= 400:
            raise from_http_status(response.status_code, f"admin {method} {path}: HTTP {response.status_code}"
                                   f"{_diagnostics(response)}", response.headers.get("retry-after"))
        return response.json()

    async def create_tenant(self, tenant: str) -> dict:
        return await self._call("POST", "/admin/tenants", {"id": tenant})

    async def register_client(self, tenant: str, client_id: str, jwks: dict, scopes: list[str]) -> dict:
        return await self._call("PUT", f"/admin/tenants/{tenant}/clients/{client_id}",
                                {"jwks": jwks, "scopes": scopes})

    async def list_clients(self, tenant: str) -> list[dict]:
        return (await self._call("GET", f"/admin/tenants/{tenant}/clients"))["clients"]

    async def revoke_client(self, tenant: str, client_id: str) -> dict:
        return await self._call("DELETE", f"/admin/tenants/{tenant}/clients/{client_id}")

    async def inbox_link(self, tenant: str, practitioner: str, lifetime_s: int | None = None) -> dict:
        """A sign-in link of the tenant's inbox for one practitioner: ``{url, practitioner, expires_at}``."""
        body: dict = {"practitioner": practitioner}
        if lifetime_s is not None:
            body["lifetime_s"] = lifetime_s
        return await self._call("POST", f"/admin/tenants/{tenant}/inbox-links", body)

    async def set_notify_secret(self, tenant: str, secret: str) -> dict:
        """The secret the sandbox signs the tenant's notifications with: ``{set, fingerprint}``."""
        return await self._call("PUT", f"/admin/tenants/{tenant}/notify-signing-secret", {"secret": secret})

    async def notify_secret(self, tenant: str) -> dict:
        return await self._call("GET", f"/admin/tenants/{tenant}/notify-signing-secret")

    async def set_faults(self, tenant: str, **faults) -> dict:
        return await self._call("PUT", f"/admin/tenants/{tenant}/faults", faults)

    async def get_faults(self, tenant: str) -> dict:
        return await self._call("GET", f"/admin/tenants/{tenant}/faults")

    async def clear_faults(self, tenant: str) -> dict:
        return await self._call("DELETE", f"/admin/tenants/{tenant}/faults")

    async def set_family(self, tenant: str, family: str) -> dict:
        """Which EHR family the tenant's FHIR API plays: ``epic-like`` or ``fhir-server``."""
        return await self._call("PUT", f"/admin/tenants/{tenant}/family", {"family": family})

    async def get_family(self, tenant: str) -> dict:
        return await self._call("GET", f"/admin/tenants/{tenant}/family")

    async def new_client(self, tenant: str, client_id: str, scopes: list[str] | tuple[str, ...] = ALL_SCOPES,
                         *, alg: str = "ES384", request_scope: str | None = None) -> SmartCredentials:
        """Register ``client_id`` with a fresh key pair; returns credentials for services.core.fhir."""
        pem, jwk = new_client_key(alg)
        await self.register_client(tenant, client_id, {"keys": [jwk]}, list(scopes))
        return SmartCredentials(client_id=client_id, private_key_pem=pem, alg=alg, kid=jwk["kid"],
                                scope=request_scope or " ".join(scopes))
