"""Console sign-in: the operator token in a signed, HttpOnly, SameSite=Strict session cookie.

The cookie holds ``{token, nonce}`` signed with HMAC-SHA256 under a key derived from the
platform master secret (``SecretSettings.derive``); it lives no longer than the token it holds
(the control service verifies the token on every call anyway). Forms carry a CSRF token bound
to the session nonce.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

COOKIE = "vigil_console"


@dataclass(frozen=True)
class Session:
    token: str
    nonce: str

    def csrf(self, key: bytes) -> str:
        return hmac.new(key, b"csrf|" + self.nonce.encode(), hashlib.sha256).hexdigest()

    def check_csrf(self, key: bytes, value: str | None) -> bool:
        return bool(value) and hmac.compare_digest(value.encode(), self.csrf(key).encode())


def new_session(token: str) -> Session:
    return Session(token, secrets.token_hex(16))


def encode(key: bytes, session: Session) -> str:
    body = base64.urlsafe_b64encode(json.dumps({"t": session.token, "n": session.nonce}).encode()).decode()
    return f"{body}.{hmac.new(key, body.encode(), hashlib.sha256).hexdigest()}"


def decode(key: bytes, raw: str | None) -> Session | None:
    if not raw or "." not in raw:
        return None
    body, _, sig = raw.rpartition(".")
    if not hmac.compare_digest(sig.encode(), hmac.new(key, body.encode(), hashlib.sha256).hexdigest().encode()):
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(body.encode()))
        return Session(str(data["t"]), str(data["n"]))
    except (ValueError, KeyError, TypeError):
        return None
