"""Per-service credentials for gRPC calls: compact JWTs naming the caller, its tenant and role.

A caller signs a short-lived token ``{sub, tenant, role, iss, aud, iat, exp, jti}`` and sends it
as ``authorization: Bearer <jwt>``; the server verifies it and takes the tenant of the call from
it (never from the request body). ``jti`` (a random id) names the token for revocation
(``services.core.revocation``, ``vigil token revoke <jti>``); a token without one is refused.

Keys come from settings, read once and checked at start-up:

- ``VIGIL_GRPC_TOKEN_ALG``: ``HS256`` (default, one shared secret) or ``EdDSA`` (Ed25519: callers
  hold the private key, servers may hold only the public key, so a server cannot mint tokens).
- HS256: ``VIGIL_GRPC_TOKEN_KEY`` or ``VIGIL_GRPC_TOKEN_KEY_FILE`` (at least 32 bytes). Without
  either, a well-known development key is used, which is refused when ``VIGIL_ENV=prod``.
- EdDSA: ``VIGIL_GRPC_TOKEN_PRIVATE_KEY_FILE`` (PEM, to sign) and/or
  ``VIGIL_GRPC_TOKEN_PUBLIC_KEY_FILE`` (PEM, to verify; derived from the private key if absent).
- ``VIGIL_GRPC_TOKEN_TTL``: lifetime of minted tokens in seconds (default 300).
"""
from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import jwt

from services.core.config import ConfigError
from services.core.errors import UnauthenticatedError
from services.core.tenancy import TenantError, check_tenant_id

ALGORITHMS = ("HS256", "EdDSA")
ISSUER = "vigil"
AUDIENCE = "vigil-grpc"
#: Roles a credential may carry. "service": a Vigil stage or service; "operator": control actions
#: on the credential's own tenant; "platform-admin": control actions on every tenant (its tenant
#: claim is ``PLATFORM_TENANT`` by convention and names no tenant's data).
ROLES = ("service", "operator", "platform-admin")
ADMIN_ROLE = "platform-admin"
PLATFORM_TENANT = "platform"
DEFAULT_TTL_SECONDS = 300
#: Clock skew tolerated between caller and server when checking exp/iat.
CLOCK_SKEW_SECONDS = 30
#: A minted token is reused until this many seconds before it expires (300 s TTL -> ~240 s reuse).
REFRESH_MARGIN_SECONDS = 60
MIN_HMAC_KEY_BYTES = 32
#: Longest token id accepted (minted ids are 32 hex characters).
MAX_JTI_CHARS = 128
#: Longest lifetime a token may be minted with (``VIGIL_GRPC_TOKEN_TTL``, ``vigil token issue --ttl``).
MAX_TTL_SECONDS = 86400
#: The development key. Public by design: refused in production.
DEV_HMAC_KEY = b"vigil-development-grpc-token-key-not-for-production"


@dataclass(frozen=True)
class Claims:
    sub: str
    tenant: str
    role: str
    exp: int
    jti: str = ""


@dataclass(frozen=True)
class TokenSettings:
    algorithm: str
    signing_key: object = field(repr=False)     # bytes (HS256) or an Ed25519 private key, or None
    verify_key: object = field(repr=False)      # bytes (HS256) or an Ed25519 public key
    ttl_seconds: int = DEFAULT_TTL_SECONDS
    is_dev_key: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "TokenSettings":
        source = os.environ if env is None else env
        environment = source.get("VIGIL_ENV") or "dev"
        algorithm = source.get("VIGIL_GRPC_TOKEN_ALG") or "HS256"
        if algorithm not in ALGORITHMS:
            raise ConfigError(f"VIGIL_GRPC_TOKEN_ALG={algorithm!r}: expected one of {', '.join(ALGORITHMS)}")
        raw_ttl = source.get("VIGIL_GRPC_TOKEN_TTL") or str(DEFAULT_TTL_SECONDS)
        if not raw_ttl.isdigit() or not 10 <= int(raw_ttl) <= MAX_TTL_SECONDS:
            raise ConfigError(f"VIGIL_GRPC_TOKEN_TTL={raw_ttl!r}: expected seconds between 10 and {MAX_TTL_SECONDS}")
        if algorithm == "HS256":
            key, is_dev = _hmac_key(source)
            if is_dev and environment == "prod":
                raise ConfigError("VIGIL_GRPC_TOKEN_KEY or VIGIL_GRPC_TOKEN_KEY_FILE is required when "
                                  "VIGIL_ENV=prod (the development key is refused)")
            return cls("HS256", key, key, int(raw_ttl), is_dev)
        private, public = _ed25519_keys(source)
        return cls("EdDSA", private, public, int(raw_ttl), False)

    @classmethod
    def for_tests(cls, key: bytes = DEV_HMAC_KEY, ttl_seconds: int = DEFAULT_TTL_SECONDS) -> "TokenSettings":
        return cls("HS256", key, key, ttl_seconds, key == DEV_HMAC_KEY)


def _read_secret_file(name: str, path: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise ConfigError(f"{name}={path!r}: cannot read ({exc.strerror})") from None


def _hmac_key(source: Mapping[str, str]) -> tuple[bytes, bool]:
    if source.get("VIGIL_GRPC_TOKEN_KEY"):
        key = source["VIGIL_GRPC_TOKEN_KEY"].encode()
        name = "VIGIL_GRPC_TOKEN_KEY"
    elif source.get("VIGIL_GRPC_TOKEN_KEY_FILE"):
        key = _read_secret_file("VIGIL_GRPC_TOKEN_KEY_FILE", source["VIGIL_GRPC_TOKEN_KEY_FILE"]).strip()
        name = "VIGIL_GRPC_TOKEN_KEY_FILE"
    else:
        return DEV_HMAC_KEY, True
    if len(key) < MIN_HMAC_KEY_BYTES:
        raise ConfigError(f"{name}: key must be at least {MIN_HMAC_KEY_BYTES} bytes")
    return key, key == DEV_HMAC_KEY


def _ed25519_keys(source: Mapping[str, str]):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

    private = public = None
    if source.get("VIGIL_GRPC_TOKEN_PRIVATE_KEY_FILE"):
        name = "VIGIL_GRPC_TOKEN_PRIVATE_KEY_FILE"
        try:
            private = load_pem_private_key(_read_secret_file(name, source[name]), password=None)
        except ValueError:
            raise ConfigError(f"{name}: not a PEM private key") from None
        if not isinstance(private, Ed25519PrivateKey):
            raise ConfigError(f"{name}: expected an Ed25519 key")
        public = private.public_key()
    if source.get("VIGIL_GRPC_TOKEN_PUBLIC_KEY_FILE"):
        name = "VIGIL_GRPC_TOKEN_PUBLIC_KEY_FILE"
        try:
            public = load_pem_public_key(_read_secret_file(name, source[name]))
        except ValueError:
            raise ConfigError(f"{name}: not a PEM public key") from None
        if not isinstance(public, Ed25519PublicKey):
            raise ConfigError(f"{name}: expected an Ed25519 key")
    if public is None:
        raise ConfigError("VIGIL_GRPC_TOKEN_ALG=EdDSA needs VIGIL_GRPC_TOKEN_PRIVATE_KEY_FILE "
                          "or VIGIL_GRPC_TOKEN_PUBLIC_KEY_FILE")
    return private, public


def issue(settings: TokenSettings, *, sub: str, tenant: str, role: str = "service",
          ttl_seconds: int | None = None, now: float | None = None) -> str:
    """Sign a credential for ``sub`` acting for ``tenant``."""
    if settings.signing_key is None:
        raise ConfigError("no token signing key configured (VIGIL_GRPC_TOKEN_PRIVATE_KEY_FILE)")
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if not sub:
        raise ValueError("sub (the calling service) is required")
    check_tenant_id(tenant)
    issued = int(now if now is not None else time.time())
    claims = {"sub": sub, "tenant": tenant, "role": role, "iss": ISSUER, "aud": AUDIENCE, "iat": issued,
              "exp": issued + (ttl_seconds if ttl_seconds is not None else settings.ttl_seconds),
              "jti": uuid.uuid4().hex}
    return jwt.encode(claims, settings.signing_key, algorithm=settings.algorithm)


def verify(settings: TokenSettings, token: str) -> Claims:
    """Check signature, issuer, audience, expiry and claim shapes; UnauthenticatedError otherwise.

    The error messages name what failed, never the token itself.
    """
    try:
        claims = jwt.decode(token, settings.verify_key, algorithms=[settings.algorithm], audience=AUDIENCE,
                            issuer=ISSUER, leeway=CLOCK_SKEW_SECONDS,
                            options={"require": ["sub", "tenant", "role", "exp", "iss", "aud", "jti"]})
    except jwt.ExpiredSignatureError:
        raise UnauthenticatedError("credential expired", code="token_expired") from None
    except jwt.InvalidSignatureError:
        raise UnauthenticatedError("credential signature invalid", code="token_signature") from None
    except jwt.InvalidTokenError as exc:
        raise UnauthenticatedError(f"credential invalid ({type(exc).__name__})", code="token_invalid") from None
    role, sub, tenant, jti = claims.get("role"), claims.get("sub"), claims.get("tenant"), claims.get("jti")
    if (role not in ROLES or not isinstance(sub, str) or not sub
            or not isinstance(jti, str) or not 1 <= len(jti) <= MAX_JTI_CHARS):
        raise UnauthenticatedError("credential claims invalid", code="token_claims")
    try:
        check_tenant_id(tenant)
    except TenantError:
        raise UnauthenticatedError("credential tenant invalid", code="token_claims") from None
    return Claims(sub=sub, tenant=tenant, role=role, exp=int(claims["exp"]), jti=jti)


class TokenSource:
    """Mints and caches tokens for one calling service, per tenant; refreshed before expiry."""

    def __init__(self, settings: TokenSettings, sub: str, role: str = "service"):
        self.settings = settings
        self.sub = sub
        self.role = role
        self._cache: dict[str, tuple[str, float]] = {}

    def token(self, tenant: str) -> str:
        now = time.time()
        cached = self._cache.get(tenant)
        if cached and cached[1] - REFRESH_MARGIN_SECONDS > now:
            return cached[0]
        token = issue(self.settings, sub=self.sub, tenant=tenant, role=self.role, now=now)
        self._cache[tenant] = (token, now + self.settings.ttl_seconds)
        return token
