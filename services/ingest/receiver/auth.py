"""Who may post notifications for a tenant.

The tenant's Subscriptions carry ``Authorization: Bearer <token>`` in ``channel.header``;
the token is derived per tenant from the platform master secret (nothing to store or
distribute). Optionally the body is signed: ``X-Vigil-Signature: sha256=<hex HMAC-SHA256>``
with a second derived per-tenant key. A present signature is always checked; tenants with
the setting ``notify_signature_required = true`` must send one.
"""
from __future__ import annotations

import hashlib
import hmac

from services.core.secrets import SecretSettings
from services.core.tenancy import Tenant

TOKEN_PURPOSE = "ingest-notify"
SIGNATURE_HEADER = "x-vigil-signature"
SIGNATURE_PREFIX = "sha256="


class AuthError(Exception):
    """Not authenticated; the message is safe to return (no secret, no PHI)."""


def channel_token(secrets: SecretSettings, tenant: str) -> str:
    return secrets.tenant_password(TOKEN_PURPOSE, tenant)


def channel_header(secrets: SecretSettings, tenant: str) -> str:
    """The exact ``channel.header`` value ``vigil subscribe`` puts on the tenant's Subscriptions."""
    return f"Authorization: Bearer {channel_token(secrets, tenant)}"


def signing_key(secrets: SecretSettings, tenant: str) -> bytes:
    return secrets.derive(f"vigil/ingest-notify-hmac/v1/{tenant}")


def sign(secrets: SecretSettings, tenant: str, body: bytes) -> str:
    return SIGNATURE_PREFIX + hmac.new(signing_key(secrets, tenant), body, hashlib.sha256).hexdigest()


def check_channel_token(secrets: SecretSettings, tenant: Tenant, authorization: str | None) -> None:
    """R4 criteria notifications (``/notify/<tenant>/r4/<Type>``): the EHR sends only what
    ``channel.header`` holds, so the tenant's bearer token is the whole check."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("missing bearer token (the Subscription's channel header)")
    if not hmac.compare_digest(token.strip().encode(), channel_token(secrets, tenant.id).encode()):
        raise AuthError("bearer token is not valid for this tenant")


def check(secrets: SecretSettings, tenant: Tenant, authorization: str | None, signature: str | None,
          body: bytes) -> None:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthError("missing bearer token (the Subscription's channel header)")
    if not hmac.compare_digest(token.strip().encode(), channel_token(secrets, tenant.id).encode()):
        raise AuthError("bearer token is not valid for this tenant")
    if signature is None:
        if tenant.setting("notify_signature_required", False):
            raise AuthError(f"request signature ({SIGNATURE_HEADER}) is required for this tenant")
        return
    if not hmac.compare_digest(signature.strip().encode(), sign(secrets, tenant.id, body).encode()):
        raise AuthError("request signature does not match the body")
