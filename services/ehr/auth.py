"""SMART Backend Services: the token endpoint (client_credentials + private_key_jwt with RS384
or ES384), access tokens, and scope checks on every FHIR request.

Scopes are SMART v2 (``system/Task.cu``, ``system/*.rs``) or v1 (``system/Task.read``,
``system/*.write``, ``system/*.*``). The granted scopes are the intersection of what the
client asked for and what it is registered for. Interactions need: read/vread/instance
history -> r, search/type history -> s, create -> c, update -> u, delete -> d.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import time
import uuid
from dataclasses import dataclass

import jwt

from services.ehr.config import ACCESS_TOKEN_LIFETIME_S, MAX_ASSERTION_LIFETIME_S
from services.ehr.outcome import FhirError
from services.ehr.registry import Registry

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SIGNING_ALGS = ("RS384", "ES384")
CLOCK_SKEW_S = 30
PERMS = "cruds"
_SCOPE = re.compile(r"^system/(\*|[A-Z][A-Za-z]+)\.(\*|read|write|[cruds]+)$")
_V1 = {"*": "cruds", "read": "rs", "write": "cud"}


class OAuthError(Exception):
    """A token endpoint error (RFC 6749 JSON body, not an OperationOutcome)."""

    def __init__(self, error: str, description: str, status: int = 400):
        super().__init__(error)
        self.error, self.description, self.status = error, description, status

    def body(self) -> dict:
        return {"error": self.error, "error_description": self.description}


@dataclass(frozen=True)
class Scope:
    type: str  # resource type or *
    perms: str  # subset of cruds, in that order

    def __str__(self) -> str:
        return f"system/{self.type}.{self.perms}"


def parse_scope(text: str) -> Scope:
    m = _SCOPE.match(text)
    if not m:
        raise ValueError(f"unsupported scope {text[:80]!r} (expected system/<Type|*>.<cruds|read|write|*>)")
    rtype, perms = m.groups()
    perms = _V1.get(perms, perms)
    if "".join(sorted(set(perms), key=PERMS.index)) != perms:
        raise ValueError(f"scope {text[:80]!r}: permissions must be distinct and in the order c r u d s")
    return Scope(rtype, perms)


def intersect(requested: list[Scope], allowed: list[Scope]) -> list[Scope]:
    granted: list[Scope] = []
    for r in requested:
        for a in allowed:
            if r.type != "*" and a.type != "*" and r.type != a.type:
                continue
            perms = "".join(p for p in PERMS if p in r.perms and p in a.perms)
            scope = Scope(r.type if r.type != "*" else a.type, perms)
            if perms and scope not in granted:
                granted.append(scope)
    return granted


@dataclass(frozen=True)
class Principal:
    tenant: str
    client_id: str
    scopes: tuple[Scope, ...]

    def allows(self, rtype: str, perm: str) -> bool:
        return any((s.type == "*" or s.type == rtype) and perm in s.perms for s in self.scopes)

    def require(self, rtype: str, perm: str) -> None:
        if not self.allows(rtype, perm):
            names = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}
            raise FhirError(403, f"The granted scopes do not allow {names[perm]} on {rtype} "
                                 f"(needs system/{rtype}.{perm})", "forbidden")


class TokenService:
    def __init__(self, registry: Registry, secret: str):
        self.registry = registry
        self._key = hmac.new(secret.encode(), b"vigil-ehr-access-token", hashlib.sha256).digest()

    async def issue(self, tenant: str, token_url: str, form: dict[str, str]) -> dict:
        if form.get("grant_type") != "client_credentials":
            raise OAuthError("unsupported_grant_type", "only grant_type=client_credentials is supported")
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise OAuthError("invalid_request", f"client_assertion_type must be {ASSERTION_TYPE}")
        assertion = form.get("client_assertion") or ""
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise OAuthError("invalid_client", "client_assertion is not a JWT", 401) from None
        alg = header.get("alg")
        if alg not in SIGNING_ALGS:
            raise OAuthError("invalid_client", f"client_assertion alg must be one of {', '.join(SIGNING_ALGS)}", 401)
        client_id = claims.get("iss")
        if not isinstance(client_id, str) or claims.get("sub") != client_id:
            raise OAuthError("invalid_client", "iss and sub must both be the client_id", 401)
        client = await self.registry.client(tenant, client_id)
        if client is None:
            raise OAuthError("invalid_client", "unknown client for this tenant", 401)
        key = _find_key(client.jwks, header.get("kid"), alg)
        try:
            verified = jwt.decode(assertion, key, algorithms=[alg], audience=token_url, leeway=CLOCK_SKEW_S,
                                  options={"require": ["exp", "iss", "sub", "aud", "jti"]})
        except jwt.PyJWTError as exc:
            raise OAuthError("invalid_client", f"client_assertion rejected: {type(exc).__name__}", 401) from None
        now = time.time()
        if verified["exp"] - now > MAX_ASSERTION_LIFETIME_S + CLOCK_SKEW_S:
            raise OAuthError("invalid_client", f"client_assertion exp is more than {MAX_ASSERTION_LIFETIME_S}s ahead",
                             401)
        if not await self.registry.use_jti(tenant, client_id, str(verified["jti"]), verified["exp"]):
            raise OAuthError("invalid_client", "client_assertion jti was already used", 401)
        try:
            requested = [parse_scope(s) for s in (form.get("scope") or "").split()]
        except ValueError as exc:
            raise OAuthError("invalid_scope", str(exc)) from None
        if not requested:
            raise OAuthError("invalid_scope", "scope is required")
        granted = intersect(requested, [parse_scope(s) for s in client.scopes])
        if not granted:
            raise OAuthError("invalid_scope", "none of the requested scopes is allowed for this client")
        scope = " ".join(str(s) for s in granted)
        token = jwt.encode({"iss": "vigil-ehr", "sub": client_id, "tenant": tenant, "scope": scope,
                            "iat": int(now), "exp": int(now) + ACCESS_TOKEN_LIFETIME_S, "jti": uuid.uuid4().hex},
                           self._key, algorithm="HS256")
        return {"access_token": token, "token_type": "bearer", "expires_in": ACCESS_TOKEN_LIFETIME_S, "scope": scope}

    async def verify(self, tenant: str, authorization: str | None) -> Principal:
        challenge = {"WWW-Authenticate": f'Bearer realm="{tenant}"'}
        if not authorization or not authorization.lower().startswith("bearer "):
            raise FhirError(401, "A bearer access token is required (SMART Backend Services)", "login",
                            headers=challenge)
        try:
            claims = jwt.decode(authorization[7:].strip(), self._key, algorithms=["HS256"], issuer="vigil-ehr",
                                options={"require": ["exp", "sub", "tenant", "scope"]})
        except jwt.ExpiredSignatureError:
            raise FhirError(401, "The access token has expired", "expired", headers=challenge) from None
        except jwt.PyJWTError:
            raise FhirError(401, "The access token is not valid", "login", headers=challenge) from None
        if claims["tenant"] != tenant:
            raise FhirError(401, "The access token was not issued for this EHR", "login", headers=challenge)
        if not await self.registry.client_active(tenant, claims["sub"]):
            raise FhirError(401, "The access token's client has been revoked", "login", headers=challenge)
        return Principal(tenant, claims["sub"], tuple(parse_scope(s) for s in claims["scope"].split()))


def _find_key(jwks: dict, kid: str | None, alg: str):
    keys = [k for k in jwks.get("keys", []) if isinstance(k, dict)]
    if kid is not None:
        keys = [k for k in keys if k.get("kid") == kid]
    keys = [k for k in keys if k.get("kty") == ("RSA" if alg == "RS384" else "EC") and k.get("alg", alg) == alg]
    if len(keys) != 1:
        raise OAuthError("invalid_client", "no unique registered key matches the assertion's kid and alg", 401)
    try:
        return jwt.PyJWK(keys[0], algorithm=alg).key
    except jwt.PyJWTError:
        raise OAuthError("invalid_client", "the registered key cannot be used", 401) from None


def check_jwks(jwks: object) -> dict:
    """Validate a JWKS at registration time (public keys only)."""
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
        raise ValueError("jwks must be an object with a non-empty 'keys' list")
    for key in jwks["keys"]:
        if not isinstance(key, dict) or key.get("kty") not in ("RSA", "EC"):
            raise ValueError("every key must be an RSA or EC JWK")
        if "d" in key:
            raise ValueError("register public keys only (a JWK with 'd' is a private key)")
        try:
            jwt.PyJWK(key, algorithm="RS384" if key["kty"] == "RSA" else "ES384")
        except jwt.PyJWTError as exc:
            raise ValueError(f"unusable key: {type(exc).__name__}") from None
    return jwks
