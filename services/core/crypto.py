"""PHI at rest: per-tenant data keys and envelope encryption (AES-256-GCM).

Keys
  The key-encryption key (KEK) is derived from the platform master secret
  (``SecretSettings.derive("vigil/kek/v1")``). Each tenant has data keys (DEKs): random 256-bit
  keys stored *wrapped* by the KEK in ``vigil_tenant_keys`` (tenant, key_id, wrapped_key,
  kek_id, created_at, active). The wrap's associated data names the tenant and key id, so a
  wrapped key copied to another tenant's row does not unwrap. Exactly one key per tenant is
  active; ``rotate`` adds a new active key and old keys keep decrypting. The table has tenant
  RLS and the application role may SELECT, INSERT and UPDATE it, never DELETE.

Ciphertext
  ``header || nonce(12) || AES-GCM ciphertext+tag``; header = ``b"VGE"``, version byte (1),
  key id (uint32 big-endian). The associated data is ``b"vigil/phi/v1|<tenant>|<purpose>|" +
  header``, binding every ciphertext to its tenant and purpose ("dlq", "hl7-raw",
  "conversation", "ledger-quote", ...): decrypting as another tenant or purpose fails.

Use
  ``keyring = Keyring(pools)`` (a ``TenantPools``), then ``await keyring.encrypt(tenant,
  plaintext, purpose)`` / ``await keyring.decrypt(tenant, blob, purpose)``;
  ``await keyring.rotate(tenant)``; ``await keyring.reencrypt(tenant, blob, purpose)``.
"""
from __future__ import annotations

import hashlib
import os
import re
import struct
import time
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.core.errors import FatalError
from services.core.secrets import SecretSettings
from services.core.tenancy import check_tenant_id
from services.core.tenantdb import TenantPools, tenant_rls_sql

MAGIC = b"VGE"
VERSION = 1
_HEADER = struct.Struct(">3sBI")  # magic, version, key id
HEADER_SIZE = _HEADER.size
NONCE_SIZE = 12
DEK_BYTES = 32
#: How long an encrypting process keeps using the active key id it last read; after a
#: rotation elsewhere, new ciphertexts move to the new key within this many seconds.
ACTIVE_KEY_CACHE_S = 30.0
_PURPOSE = re.compile(r"^[a-z][a-z0-9-]{0,39}$")

SCHEMA_MODULE = "crypto"
SCHEMA_STEPS = [
    """
CREATE TABLE IF NOT EXISTS vigil_tenant_keys (
    tenant text NOT NULL,
    key_id integer NOT NULL CHECK (key_id > 0),
    wrapped_key bytea NOT NULL,
    kek_id text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    active boolean NOT NULL DEFAULT true,
    PRIMARY KEY (tenant, key_id)
);
CREATE UNIQUE INDEX IF NOT EXISTS vigil_tenant_keys_one_active ON vigil_tenant_keys (tenant) WHERE active;
""",
    tenant_rls_sql("vigil_tenant_keys", ("SELECT", "INSERT", "UPDATE")),
]


class CryptoError(FatalError):
    code = "crypto"


class DecryptionError(CryptoError):
    """Wrong tenant, wrong purpose, unknown key or altered bytes (deliberately not told apart)."""

    code = "decryption_failed"


def check_purpose(purpose: str) -> str:
    if not isinstance(purpose, str) or not _PURPOSE.match(purpose):
        raise ValueError(f"purpose {purpose!r}: use 1-40 of a-z, 0-9 and '-', starting with a letter")
    return purpose


def _aad(tenant: str, purpose: str, header: bytes) -> bytes:
    return f"vigil/phi/v1|{tenant}|{purpose}|".encode() + header


def _cipher(dek: bytes | AESGCM) -> AESGCM:
    return dek if isinstance(dek, AESGCM) else AESGCM(dek)


def seal(dek: bytes | AESGCM, key_id: int, tenant: str, purpose: str, plaintext: bytes) -> bytes:
    """Encrypt with a known data key (the pure half of ``Keyring.encrypt``)."""
    header = _HEADER.pack(MAGIC, VERSION, key_id)
    nonce = os.urandom(NONCE_SIZE)
    return header + nonce + _cipher(dek).encrypt(nonce, plaintext, _aad(tenant, purpose, header))


def key_id_of(blob: bytes) -> int:
    """The data key id named in a ciphertext's header."""
    if not isinstance(blob, (bytes, bytearray, memoryview)) or len(blob) < HEADER_SIZE + NONCE_SIZE + 16:
        raise DecryptionError("not a Vigil ciphertext (too short)")
    magic, version, key_id = _HEADER.unpack_from(bytes(blob[:HEADER_SIZE]))
    if magic != MAGIC or version != VERSION:
        raise DecryptionError("not a Vigil ciphertext (unknown header)")
    return key_id


def open_sealed(dek: bytes | AESGCM, tenant: str, purpose: str, blob: bytes) -> bytes:
    blob = bytes(blob)
    key_id_of(blob)
    header, nonce, body = blob[:HEADER_SIZE], blob[HEADER_SIZE:HEADER_SIZE + NONCE_SIZE], blob[HEADER_SIZE + NONCE_SIZE:]
    try:
        return _cipher(dek).decrypt(nonce, body, _aad(tenant, purpose, header))
    except InvalidTag:
        raise DecryptionError("ciphertext does not authenticate for this tenant and purpose") from None


@dataclass(frozen=True)
class KeyWrapper:
    """Wraps and unwraps data keys with the KEK."""

    kek: bytes

    @classmethod
    def from_secrets(cls, secrets: SecretSettings) -> "KeyWrapper":
        return cls(secrets.derive("vigil/kek/v1"))

    @property
    def kek_id(self) -> str:
        return hashlib.sha256(b"vigil/kek-id|" + self.kek).hexdigest()[:16]

    def _aad(self, tenant: str, key_id: int) -> bytes:
        return f"vigil/dek/v1|{tenant}|{key_id}".encode()

    def wrap(self, tenant: str, key_id: int, dek: bytes) -> bytes:
        nonce = os.urandom(NONCE_SIZE)
        return nonce + AESGCM(self.kek).encrypt(nonce, dek, self._aad(tenant, key_id))

    def unwrap(self, tenant: str, key_id: int, wrapped: bytes, kek_id: str) -> bytes:
        if kek_id != self.kek_id:
            raise CryptoError(f"tenant {tenant} key {key_id} was wrapped by another master key ({kek_id})")
        try:
            return AESGCM(self.kek).decrypt(wrapped[:NONCE_SIZE], wrapped[NONCE_SIZE:], self._aad(tenant, key_id))
        except InvalidTag:
            raise CryptoError(f"tenant {tenant} key {key_id} does not unwrap (altered or moved)") from None


class Keyring:
    """Tenant data keys from PostgreSQL (through each tenant's own pool), cached unwrapped."""

    def __init__(self, pools: TenantPools, secrets: SecretSettings | None = None):
        self.pools = pools
        self.wrapper = KeyWrapper.from_secrets(secrets or pools.secrets)
        self._deks: dict[tuple[str, int], AESGCM] = {}
        self._active: dict[str, tuple[int, float]] = {}

    async def active_key_id(self, tenant: str) -> int:
        """The tenant's active key id, creating key 1 on first use."""
        tenant = check_tenant_id(tenant)
        cached = self._active.get(tenant)
        if cached and time.monotonic() - cached[1] < ACTIVE_KEY_CACHE_S:
            return cached[0]
        # the tenant's read connection, not a unit of work from its pool: callers encrypt inside
        # their own unit of work, and as many of them as the pool holds would wait for a checkout
        # none of them gives back
        rows = await self.pools.read(tenant, "SELECT key_id, wrapped_key, kek_id FROM vigil_tenant_keys "
                                             "WHERE tenant = $1 AND active", tenant)
        row = rows[0] if rows else None
        if row is None:  # the tenant's first key, once in its life
            async with self.pools.tx(tenant) as conn:
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext('vigil_tenant_keys:' || $1))", tenant)
                row = await conn.fetchrow("SELECT key_id, wrapped_key, kek_id FROM vigil_tenant_keys "
                                          "WHERE tenant = $1 AND active", tenant)
                if row is None:
                    row = await self._insert_key(conn, tenant)
        self._remember(tenant, row)
        self._active[tenant] = (row["key_id"], time.monotonic())
        return row["key_id"]

    async def _insert_key(self, conn, tenant: str):
        next_id = await conn.fetchval("SELECT coalesce(max(key_id), 0) + 1 FROM vigil_tenant_keys WHERE tenant = $1",
                                      tenant)
        dek = os.urandom(DEK_BYTES)
        return await conn.fetchrow(
            "INSERT INTO vigil_tenant_keys (tenant, key_id, wrapped_key, kek_id, active) VALUES ($1, $2, $3, $4, true) "
            "RETURNING key_id, wrapped_key, kek_id", tenant, next_id, self.wrapper.wrap(tenant, next_id, dek),
            self.wrapper.kek_id)

    def _remember(self, tenant: str, row) -> AESGCM:
        dek = AESGCM(self.wrapper.unwrap(tenant, row["key_id"], bytes(row["wrapped_key"]), row["kek_id"]))
        self._deks[(tenant, row["key_id"])] = dek
        return dek

    async def _dek(self, tenant: str, key_id: int) -> AESGCM:
        dek = self._deks.get((tenant, key_id))
        if dek is not None:
            return dek
        rows = await self.pools.read(tenant, "SELECT key_id, wrapped_key, kek_id FROM vigil_tenant_keys "
                                             "WHERE tenant = $1 AND key_id = $2", tenant, key_id)  # as above
        row = rows[0] if rows else None
        if row is None:
            raise DecryptionError("ciphertext does not authenticate for this tenant and purpose")
        return self._remember(tenant, row)

    async def encrypt(self, tenant: str, plaintext: bytes, purpose: str) -> bytes:
        check_purpose(purpose)
        if not isinstance(plaintext, (bytes, bytearray)):
            raise TypeError("plaintext must be bytes")
        key_id = await self.active_key_id(tenant)
        return seal(await self._dek(tenant, key_id), key_id, tenant, purpose, bytes(plaintext))

    async def decrypt(self, tenant: str, blob: bytes, purpose: str) -> bytes:
        tenant, purpose = check_tenant_id(tenant), check_purpose(purpose)
        return open_sealed(await self._dek(tenant, key_id_of(blob)), tenant, purpose, blob)

    async def rotate(self, tenant: str) -> int:
        """Make a new active data key; returns its id. Old keys stay for decryption."""
        tenant = check_tenant_id(tenant)
        async with self.pools.tx(tenant) as conn:
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('vigil_tenant_keys:' || $1))", tenant)
            await conn.execute("UPDATE vigil_tenant_keys SET active = false WHERE tenant = $1 AND active", tenant)
            row = await self._insert_key(conn, tenant)
        self._remember(tenant, row)
        self._active[tenant] = (row["key_id"], time.monotonic())
        return row["key_id"]

    async def reencrypt(self, tenant: str, blob: bytes, purpose: str) -> bytes:
        """Decrypt with whichever key made ``blob`` and encrypt again with the active key."""
        return await self.encrypt(tenant, await self.decrypt(tenant, blob, purpose), purpose)

    async def keys(self, tenant: str) -> list[dict]:
        """Key metadata (never key material), oldest first."""
        async with self.pools.tx(tenant, readonly=True) as conn:
            rows = await conn.fetch("SELECT key_id, kek_id, created_at, active FROM vigil_tenant_keys "
                                    "WHERE tenant = $1 ORDER BY key_id", check_tenant_id(tenant))
        return [dict(r) for r in rows]
