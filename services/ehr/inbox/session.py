"""Inbox sign-in: per-practitioner, signed, short-lived, single-use links and a session bound to
that practitioner.

A link is ``/inbox/<tenant>/login?token=<token>``; ``token = issue_link(admin_secret, tenant,
practitioner)`` is ``base64url(JSON {t: tenant, p: practitioner id, n: random nonce, e: expiry})``
``.`` HMAC-SHA256 under a key derived from the admin secret (nothing stored when issued). It is
valid for ``LINK_LIFETIME_S`` (15 min) and once: redeeming it records its nonce (the EHR's
``ehr_jti`` table, client ``inbox-link``), so a second use - a forwarded mail, a browser
history, a proxy log - is refused. Links come from the admin API
(``POST /admin/tenants/<tenant>/inbox-links``) or ``vigil ehr inbox-link --tenant T
--practitioner P``.

Redeeming sets the cookie ``vigil_inbox`` with ``Path=/inbox/<tenant>``, HttpOnly,
SameSite=Strict, holding the tenant, the practitioner of the link, a nonce and an expiry,
signed with another derived key. The session acts only as that practitioner: there is no
practitioner picker, and a Task owned by anyone else is 403 (page and actions). Every page
checks that the cookie's tenant is the route's tenant. Forms carry a CSRF token bound to the
session nonce.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass

COOKIE = "vigil_inbox"
#: A clinician session lasts a working shift: 12 h = 43,200 s.
SESSION_LIFETIME_S = 12 * 3600
#: A sign-in link is good for 15 min (900 s) and one use.
LINK_LIFETIME_S = 15 * 60
#: The longest lifetime the admin API grants a link: 1 h.
LINK_LIFETIME_MAX_S = 3600
#: The ``ehr_jti`` client id under which redeemed link nonces are recorded.
LINK_JTI_CLIENT = "inbox-link"
_PRACTITIONER = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_MAX_TOKEN = 1024


def _key(admin_secret: str, purpose: str) -> bytes:
    return hmac.new(admin_secret.encode(), f"vigil-ehr-inbox/{purpose}".encode(), hashlib.sha256).digest()


def _signed(admin_secret: str, purpose: str, claims: dict) -> str:
    body = base64.urlsafe_b64encode(json.dumps(claims, separators=(",", ":")).encode()).decode().rstrip("=")
    return f"{body}.{hmac.new(_key(admin_secret, purpose), body.encode(), hashlib.sha256).hexdigest()}"


def _verified(admin_secret: str, purpose: str, raw: str | None) -> dict | None:
    if not raw or not isinstance(raw, str) or "." not in raw or len(raw) > _MAX_TOKEN * 2:
        return None
    body, _, sig = raw.rpartition(".")
    expected = hmac.new(_key(admin_secret, purpose), body.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(sig.encode(), expected.encode()):
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(body.encode() + b"=" * (-len(body) % 4)))
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class Link:
    tenant: str
    practitioner: str
    nonce: str
    expires: int


def issue_link(admin_secret: str, tenant: str, practitioner: str, lifetime_s: int = LINK_LIFETIME_S,
               now: float | None = None) -> str:
    """A sign-in token for ``practitioner`` of ``tenant``, valid ``lifetime_s`` seconds, once."""
    if not _PRACTITIONER.match(practitioner or ""):
        raise ValueError("practitioner must be a FHIR id (1-64 of A-Z a-z 0-9 - .)")
    if not 0 < lifetime_s <= LINK_LIFETIME_MAX_S:
        raise ValueError(f"a link lives 1-{LINK_LIFETIME_MAX_S} s")
    expires = int((time.time() if now is None else now) + lifetime_s)
    return _signed(admin_secret, "link", {"t": tenant, "p": practitioner, "n": secrets.token_hex(16), "e": expires})


def read_link(admin_secret: str, tenant: str, token: str | None, now: float | None = None) -> Link | None:
    """The link when the token is genuine, unexpired and for ``tenant``; else None (not yet
    checked: whether it was used before, which the caller records)."""
    data = _verified(admin_secret, "link", token)
    if data is None or data.get("t") != tenant or not isinstance(data.get("e"), int):
        return None
    if data["e"] < (time.time() if now is None else now):
        return None
    if not isinstance(data.get("p"), str) or not _PRACTITIONER.match(data["p"]) or not isinstance(data.get("n"), str):
        return None
    return Link(tenant, data["p"], data["n"], data["e"])


@dataclass(frozen=True)
class Session:
    tenant: str
    practitioner: str
    nonce: str
    expires: int

    def csrf(self, admin_secret: str) -> str:
        return hmac.new(_key(admin_secret, "csrf"), f"{self.tenant}|{self.nonce}".encode(),
                        hashlib.sha256).hexdigest()

    def check_csrf(self, admin_secret: str, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(token.encode(), self.csrf(admin_secret).encode())


def new_session(link: Link) -> Session:
    """The session a redeemed link opens: bound to the link's practitioner."""
    return Session(link.tenant, link.practitioner, secrets.token_hex(16), int(time.time()) + SESSION_LIFETIME_S)


def encode(admin_secret: str, session: Session) -> str:
    return _signed(admin_secret, "session", {"t": session.tenant, "p": session.practitioner, "n": session.nonce,
                                             "e": session.expires})


def decode(admin_secret: str, tenant: str, raw: str | None) -> Session | None:
    """The session in the cookie when it is genuine, unexpired, for ``tenant`` and bound to a
    practitioner; else None."""
    data = _verified(admin_secret, "session", raw)
    if data is None or data.get("t") != tenant or not isinstance(data.get("e"), int) or data["e"] < time.time():
        return None
    if not isinstance(data.get("p"), str) or not _PRACTITIONER.match(data["p"]):
        return None
    return Session(data["t"], data["p"], str(data.get("n")), data["e"])


def cookie_args(tenant: str, value: str) -> dict:
    return {"key": COOKIE, "value": value, "path": f"/inbox/{tenant}", "httponly": True, "samesite": "strict",
            "max_age": SESSION_LIFETIME_S}
