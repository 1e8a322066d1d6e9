"""JWT verification of the CDS client (CDS Hooks 2.0, "Trusting CDS Clients").

Every hook and feedback call carries ``Authorization: Bearer <JWT>`` signed by the tenant's
CDS client (ES384 or RS384, ``kid`` in the header naming a key of the tenant's JWKS). Checked:
signature, ``iss`` = the tenant's configured issuer, ``aud`` = the service endpoint (feedback:
or the feedback URL), ``exp``
(required, not past), ``iat`` (required), ``jti`` (required, never seen before for this
tenant: remembered in the tenant's Redis until the token expires). Anything else is a 401
with a generic message; the reason goes to the log as a short code, never the token.
"""
from __future__ import annotations

import json
import time

import jwt

from services.core import kv
from services.core.errors import UnauthenticatedError
from services.cdshooks.config import CdsClient

ALGORITHMS = ("ES384", "RS384")
#: Clock skew tolerated on exp / iat (seconds).
LEEWAY_S = 30
#: A token may live at most this long (exp - iat): CDS clients mint one per call.
MAX_LIFETIME_S = 3600


class Unauthorized(UnauthenticatedError):
    pass


def _key(client: CdsClient, kid: str | None, alg: str):
    for jwk in client.jwks.get("keys", []):
        if jwk.get("kid") == kid or (kid is None and len(client.jwks["keys"]) == 1):
            algo = jwt.algorithms.ECAlgorithm if alg == "ES384" else jwt.algorithms.RSAAlgorithm
            try:
                return algo.from_jwk(json.dumps(jwk))
            except (ValueError, jwt.InvalidKeyError, KeyError):
                raise Unauthorized("the JWKS key does not fit the token's algorithm", code="bad_key") from None
    raise Unauthorized("no key with the token's kid", code="unknown_kid")


async def verify(token: str | None, client: CdsClient | None, audience: list[str], redis, tenant: str) -> dict:
    """The verified claims, or Unauthorized."""
    if client is None:
        raise Unauthorized("the tenant has no CDS client configured", code="no_client")
    if not token:
        raise Unauthorized("missing bearer token", code="no_token")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise Unauthorized("malformed token", code="malformed") from None
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise Unauthorized("algorithm not allowed", code="bad_alg")
    try:
        claims = jwt.decode(token, _key(client, header.get("kid"), alg), algorithms=[alg], audience=audience,
                            issuer=client.issuer, leeway=LEEWAY_S,
                            options={"require": ["iss", "aud", "exp", "iat", "jti"]})
    except jwt.ExpiredSignatureError:
        raise Unauthorized("token expired", code="expired") from None
    except jwt.InvalidAudienceError:
        raise Unauthorized("wrong audience", code="bad_aud") from None
    except jwt.InvalidIssuerError:
        raise Unauthorized("wrong issuer", code="bad_iss") from None
    except jwt.PyJWTError:
        raise Unauthorized("invalid token", code="invalid") from None
    if claims["exp"] - claims["iat"] > MAX_LIFETIME_S:
        raise Unauthorized("token lifetime too long", code="lifetime")
    ttl = max(1, int(claims["exp"] - time.time()) + LEEWAY_S)
    fresh = await redis.set(kv.key(tenant, "cds-jti", str(claims["jti"])[:128]), b"1", nx=True, ex=ttl)
    if not fresh:
        raise Unauthorized("token replayed", code="replayed_jti")
    return claims
