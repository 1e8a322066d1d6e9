"""Who may post notifications for a tenant.

Two things, per tenant setting ``notify_auth``:

``"signature"`` (the default)
    The body is signed: ``X-Vigil-Signature: sha256=<hex HMAC-SHA256 of the raw body>`` (or
    Medplum's ``X-Signature: <hex>``), keyed by the tenant's notification signing secret. The
    secret is kept outside the Subscription resource - in the EHR's own configuration (the
    sandbox's admin API, ``vigil notify-key sandbox``; Medplum's ``subscription-secret``
    extension is *inside* the resource, see docs/security.md) - so a SMART client that can read
    Subscriptions learns the channel header but cannot forge a notification. The channel
    header's bearer token is still required too.
``"header-token"``
    For an EHR that cannot sign: the ``Authorization: Bearer <token>`` the Subscription's
    ``channel.header`` carries is enough (a present signature is still checked). Anyone allowed to
    read the tenant's Subscriptions can learn that token: pair it with network controls (only the
    EHR's egress addresses reach ``/notify``). Explicit, per tenant.

Secrets are derived per tenant from the platform master secret (nothing to store or
distribute): the token with ``tenant_password("ingest-notify", tenant)``; signing secret
generation ``n`` as the hex of ``derive("vigil/ingest-notify-hmac/v1/<tenant>[/<n>]")``, used
as the HMAC key as text (as Medplum uses its secret string). Rotation: the tenant setting
``notify_signing_keys`` lists the generations accepted, newest first (default ``[1]``); during a
rotation both (``[2, 1]``) are accepted while the EHR is given generation 2, then ``[2]``.
"""
from __future__ import annotations

import hashlib
import hmac

from services.core.secrets import SecretSettings
from services.core.tenancy import Tenant

TOKEN_PURPOSE = "ingest-notify"
SIGNATURE_HEADER = "x-vigil-signature"
#: Medplum's header (hex HMAC-SHA256 of the body, no prefix).
MEDPLUM_SIGNATURE_HEADER = "x-signature"
SIGNATURE_PREFIX = "sha256="
MODES = ("signature", "header-token")
DEFAULT_MODE = "signature"
#: Generations accepted when the tenant names none.
DEFAULT_GENERATIONS = (1,)
#: At most this many generations are accepted at once (two during a rotation, with room to spare).
MAX_GENERATIONS = 3


class AuthError(Exception):
    """Not authenticated; the message is safe to return (no secret, no PHI)."""


class AuthConfigError(ValueError):
    """The tenant's notification settings are malformed (named, never guessed)."""


def channel_token(secrets: SecretSettings, tenant: str) -> str:
    return secrets.tenant_password(TOKEN_PURPOSE, tenant)


def channel_header(secrets: SecretSettings, tenant: str) -> str:
    """The exact ``channel.header`` value ``vigil subscribe`` puts on the tenant's Subscriptions."""
    return f"Authorization: Bearer {channel_token(secrets, tenant)}"


def signing_secret(secrets: SecretSettings, tenant: str, generation: int = 1) -> str:
    """The text an EHR is configured with to sign the tenant's notifications (64 hex digits)."""
    if type(generation) is not int or generation < 1:
        raise AuthConfigError("a signing key generation is an integer >= 1")
    label = f"vigil/ingest-notify-hmac/v1/{tenant}" + ("" if generation == 1 else f"/{generation}")
    return secrets.derive(label).hex()


def sign(secrets: SecretSettings, tenant: str, body: bytes, generation: int = 1) -> str:
    """The ``X-Vigil-Signature`` value an EHR holding generation ``generation`` sends."""
    return sign_with(signing_secret(secrets, tenant, generation), body)


def sign_with(secret: str, body: bytes) -> str:
    return SIGNATURE_PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def mode(tenant: Tenant) -> str:
    value = tenant.setting("notify_auth", DEFAULT_MODE)
    if value not in MODES:
        raise AuthConfigError(f"tenant {tenant.id}: notify_auth must be one of {', '.join(MODES)}")
    return value


def generations(tenant: Tenant) -> tuple[int, ...]:
    value = tenant.setting("notify_signing_keys", list(DEFAULT_GENERATIONS))
    if (not isinstance(value, list) or not 1 <= len(value) <= MAX_GENERATIONS
            or not all(type(g) is int and g >= 1 for g in value)):
        raise AuthConfigError(f"tenant {tenant.id}: notify_signing_keys must list 1-{MAX_GENERATIONS} "
                              "generations (integers >= 1), newest first")
    return tuple(value)


def _signature(headers) -> str | None:
    """The hex digest sent, from either header form; None when neither is present."""
    vigil = headers.get(SIGNATURE_HEADER)
    if vigil is not None:
        vigil = vigil.strip()
        return vigil[len(SIGNATURE_PREFIX):] if vigil.startswith(SIGNATURE_PREFIX) else ""
    medplum = headers.get(MEDPLUM_SIGNATURE_HEADER)
    return medplum.strip() if medplum is not None else None


def check(secrets: SecretSettings, tenant: Tenant, headers, body: bytes) -> None:
    """Raise ``AuthError`` unless ``headers`` (a case-insensitive mapping) authenticate ``body`` for
    ``tenant``; ``AuthConfigError`` when the tenant's settings are malformed."""
    required = mode(tenant) == "signature"
    accepted = generations(tenant)
    scheme, _, token = (headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthError("missing bearer token (the Subscription's channel header)")
    if not hmac.compare_digest(token.strip().encode(), channel_token(secrets, tenant.id).encode()):
        raise AuthError("bearer token is not valid for this tenant")
    sent = _signature(headers)
    if sent is None:
        if required:
            raise AuthError(f"request signature ({SIGNATURE_HEADER}) is required for this tenant")
        return
    matches = [hmac.compare_digest(sent.encode(), sign(secrets, tenant.id, body, g)[len(SIGNATURE_PREFIX):].encode())
               for g in accepted]
    if not any(matches):
        raise AuthError("request signature does not match the body")
