"""The platform master secret and everything derived from it.

One 32-byte master secret is the root of the platform's credentials:

- ``VIGIL_MASTER_KEY``: the secret, base64 (standard or url-safe) of exactly 32 bytes, or
- ``VIGIL_MASTER_KEY_FILE``: a file holding that base64 text (mode 0600 or stricter).

Setting both is an error. In ``dev`` and ``test`` (``VIGIL_ENV``) an unset secret falls back
to ``DEV_MASTER_KEY``, a published constant; ``prod`` refuses to start without a secret and
refuses the dev constant.

Derived values use HKDF-SHA256 with a distinct ``info`` label per purpose, so no two uses
share a key: the key-encryption key that wraps tenant data keys (``services.core.keystore``),
each tenant's Redis ACL password (``services.core.kv``) and each tenant's PostgreSQL role
password (``services.core.tenantdb``). Derivation means every process holding the master
secret computes the same credentials with no per-tenant secret files to distribute; rotating
the master secret rotates all of them (re-run the onboarding steps, then re-wrap data keys).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from services.core.config import ENVIRONMENTS, ConfigError
from services.core.tenancy import check_tenant_id

MASTER_KEY_BYTES = 32
#: Public and therefore worthless as a secret: usable only where VIGIL_ENV is dev or test.
DEV_MASTER_KEY = hashlib.sha256(b"vigil development master key: not a secret").digest()

_HKDF_SALT = b"vigil-platform-v1"


def _decode_key(name: str, raw: str) -> bytes:
    text = raw.strip()
    try:
        standard = text.replace("-", "+").replace("_", "/")
        key = base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{name}: expected base64 of {MASTER_KEY_BYTES} bytes") from None
    if len(key) != MASTER_KEY_BYTES:
        raise ConfigError(f"{name}: expected base64 of {MASTER_KEY_BYTES} bytes, got {len(key)} bytes")
    return key


@dataclass(frozen=True)
class SecretSettings:
    """The master secret (never printed) and where it came from."""

    master_key: bytes = field(repr=False)
    source: str

    @property
    def is_dev_default(self) -> bool:
        return self.master_key == DEV_MASTER_KEY

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "SecretSettings":
        source = os.environ if env is None else env
        environment = source.get("VIGIL_ENV") or "dev"
        if environment not in ENVIRONMENTS:
            raise ConfigError(f"VIGIL_ENV={environment!r}: expected one of {', '.join(ENVIRONMENTS)}")
        inline, path = source.get("VIGIL_MASTER_KEY") or "", source.get("VIGIL_MASTER_KEY_FILE") or ""
        if inline and path:
            raise ConfigError("set VIGIL_MASTER_KEY or VIGIL_MASTER_KEY_FILE, not both")
        if inline:
            settings = cls(_decode_key("VIGIL_MASTER_KEY", inline), "VIGIL_MASTER_KEY")
        elif path:
            settings = cls(_decode_key("VIGIL_MASTER_KEY_FILE", _read_secret_file(Path(path))),
                           f"VIGIL_MASTER_KEY_FILE={path}")
        elif environment == "prod":
            raise ConfigError("VIGIL_MASTER_KEY or VIGIL_MASTER_KEY_FILE is required when VIGIL_ENV=prod")
        else:
            settings = cls(DEV_MASTER_KEY, "development default")
        if environment == "prod" and settings.is_dev_default:
            raise ConfigError("the development master key is refused when VIGIL_ENV=prod")
        return settings

    def derive(self, label: str, length: int = 32) -> bytes:
        """HKDF-SHA256 of the master secret for one purpose (``label`` names it)."""
        return HKDF(algorithm=hashes.SHA256(), length=length, salt=_HKDF_SALT,
                    info=label.encode()).derive(self.master_key)

    def tenant_password(self, purpose: str, tenant: str) -> str:
        """A per-tenant password (url-safe text, 256 bits) for ``purpose`` (``redis``, ``postgres``)."""
        raw = self.derive(f"vigil/{purpose}-password/v1/{check_tenant_id(tenant)}")
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _read_secret_file(path: Path) -> str:
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"VIGIL_MASTER_KEY_FILE={path}: cannot read ({exc.strerror})") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"VIGIL_MASTER_KEY_FILE={path}: readable by group or others; chmod 600 it")
    return path.read_text(encoding="ascii")


def generate_master_key() -> str:
    """A fresh master secret in the form VIGIL_MASTER_KEY expects."""
    return base64.b64encode(os.urandom(MASTER_KEY_BYTES)).decode()
