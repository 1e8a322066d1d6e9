"""Inbox sign-in: a per-tenant login link and a signed session cookie scoped to the tenant.

The login token of a tenant is ``login_token(admin_secret, tenant)`` (an HMAC, nothing
stored); ``/inbox/<tenant>/login?token=...`` sets the cookie ``vigil_inbox`` with
``Path=/inbox/<tenant>``, HttpOnly, SameSite=Strict, holding the tenant, the chosen
practitioner, a nonce and an expiry, signed with a key derived from the admin secret. Every
page checks that the cookie's tenant is the route's tenant. Forms carry a CSRF token bound to
the session nonce.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

COOKIE = "vigil_inbox"
#: A clinician session lasts a working shift: 12 h = 43,200 s.
SESSION_LIFETIME_S = 12 * 3600


def _key(admin_secret: str, purpose: str) -> bytes:
    return hmac.new(admin_secret.encode(), f"vigil-ehr-inbox/{purpose}".encode(), hashlib.sha256).digest()


def login_token(admin_secret: str, tenant: str) -> str:
    return hmac.new(_key(admin_secret, "login"), tenant.encode(), hashlib.sha256).hexdigest()[:40]


def check_login_token(admin_secret: str, tenant: str, token: str) -> bool:
    return hmac.compare_digest(token.encode(), login_token(admin_secret, tenant).encode())


@dataclass(frozen=True)
class Session:
    tenant: str
    practitioner: str | None
    nonce: str
    expires: int

    def csrf(self, admin_secret: str) -> str:
        return hmac.new(_key(admin_secret, "csrf"), f"{self.tenant}|{self.nonce}".encode(),
                        hashlib.sha256).hexdigest()

    def check_csrf(self, admin_secret: str, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(token.encode(), self.csrf(admin_secret).encode())


def new_session(tenant: str) -> Session:
    return Session(tenant, None, secrets.token_hex(16), int(time.time()) + SESSION_LIFETIME_S)


def encode(admin_secret: str, session: Session) -> str:
    body = base64.urlsafe_b64encode(json.dumps({"t": session.tenant, "p": session.practitioner, "n": session.nonce,
                                                "e": session.expires}, separators=(",", ":")).encode()).decode()
    sig = hmac.new(_key(admin_secret, "session"), body.encode(), hashlib.sha256).hexdigest()
    return f"{body}.{sig}"


def decode(admin_secret: str, tenant: str, raw: str | None) -> Session | None:
    """The session in the cookie when it is genuine, unexpired and for ``tenant``; else None."""
    if not raw or "." not in raw or len(raw) > 2048:
        return None
    body, _, sig = raw.rpartition(".")
    expected = hmac.new(_key(admin_secret, "session"), body.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(sig.encode(), expected.encode()):
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(body.encode()))
    except ValueError:
        return None
    if data.get("t") != tenant or int(data.get("e", 0)) < time.time():
        return None
    return Session(data["t"], data.get("p"), str(data.get("n")), int(data["e"]))


def cookie_args(tenant: str, value: str) -> dict:
    return {"key": COOKIE, "value": value, "path": f"/inbox/{tenant}", "httponly": True, "samesite": "strict",
            "max_age": SESSION_LIFETIME_S}
