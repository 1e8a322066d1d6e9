"""PHI at rest: per-tenant data keys; a ciphertext decrypts only as its own tenant and purpose."""
from __future__ import annotations

import asyncio

import asyncpg
import pytest
from typer.testing import CliRunner

from services.core.crypto import CryptoError, DecryptionError, Keyring, key_id_of
from services.core.tenantdb import TenantPools

NOTE = "Pt reports severe diarrhea x6/day since cycle 3 of pembrolizumab.".encode()


@pytest.fixture
def keyring(pools) -> Keyring:
    return Keyring(pools)


async def test_round_trip_and_tenant_binding(keyring, two_tenants, adversary):
    a, b = two_tenants
    blob = await keyring.encrypt(a, NOTE, "dlq")
    assert NOTE not in blob and await keyring.decrypt(a, blob, "dlq") == NOTE
    assert await keyring.encrypt(a, NOTE, "dlq") != blob  # fresh nonce every time
    await keyring.encrypt(b, b"warm up b's key", "dlq")
    with adversary.attempt("crypto: decrypt tenant A's ciphertext as tenant B", DecryptionError):
        await keyring.decrypt(b, blob, "dlq")
    with adversary.attempt("crypto: decrypt with another purpose", DecryptionError):
        await keyring.decrypt(a, blob, "conversation")
    tampered = bytearray(blob)
    tampered[-20] ^= 0x01
    with adversary.attempt("crypto: decrypt a ciphertext with one flipped bit", DecryptionError):
        await keyring.decrypt(a, bytes(tampered), "dlq")
    b_blob = await keyring.encrypt(b, NOTE, "dlq")
    spliced = blob[:8] + b_blob[8:]  # A's header (key id) on B's body
    with adversary.attempt("crypto: splice headers between tenants' ciphertexts", DecryptionError):
        await keyring.decrypt(a, spliced, "dlq")


async def test_fresh_keyring_for_other_tenant_cannot_read(stack, secrets, two_tenants, adversary):
    """A separate process (its own pools, its own cache) for tenant B still cannot decrypt A's data."""
    a, b = two_tenants
    pools_a, pools_b = TenantPools(stack, secrets), TenantPools(stack, secrets)
    try:
        blob = await Keyring(pools_a).encrypt(a, NOTE, "hl7-raw")
        with adversary.attempt("crypto: B's process decrypts A's ciphertext (key not visible to B)", DecryptionError):
            await Keyring(pools_b).decrypt(b, blob, "hl7-raw")
    finally:
        await pools_a.close()
        await pools_b.close()


async def test_rotation_keeps_old_ciphertexts_readable(keyring, provision, stack, secrets):
    tenant = await provision()
    old = await keyring.encrypt(tenant, NOTE, "ledger-quote")
    first = key_id_of(old)
    new_id = await keyring.rotate(tenant)
    assert new_id == first + 1
    new = await keyring.encrypt(tenant, NOTE, "ledger-quote")
    assert key_id_of(new) == new_id
    other_process = Keyring(TenantPools(stack, secrets))
    try:
        assert await other_process.decrypt(tenant, old, "ledger-quote") == NOTE
        assert await other_process.decrypt(tenant, new, "ledger-quote") == NOTE
    finally:
        await other_process.pools.close()
    moved = await keyring.reencrypt(tenant, old, "ledger-quote")
    assert key_id_of(moved) == new_id and await keyring.decrypt(tenant, moved, "ledger-quote") == NOTE
    keys = await keyring.keys(tenant)
    assert [(k["key_id"], k["active"]) for k in keys] == [(first, False), (new_id, True)]


async def test_concurrent_first_use_creates_one_key(stack, secrets, provision):
    tenant = await provision()
    rings = [Keyring(TenantPools(stack, secrets)) for _ in range(4)]
    try:
        blobs = await asyncio.gather(*(r.encrypt(tenant, NOTE, "dlq") for r in rings))
        assert {key_id_of(x) for x in blobs} == {1}
        assert [k["key_id"] for k in await rings[0].keys(tenant)] == [1]
    finally:
        for r in rings:
            await r.pools.close()


async def test_key_table_is_guarded(pools, keyring, two_tenants, admin_pool, secrets, adversary):
    a, b = two_tenants
    await keyring.encrypt(a, NOTE, "dlq")
    await keyring.encrypt(b, NOTE, "dlq")
    with adversary.attempt("crypto: tenant deletes data keys (crypto-shred) through its role",
                           asyncpg.InsufficientPrivilegeError):
        async with pools.tx(a) as conn:
            await conn.execute("DELETE FROM vigil_tenant_keys WHERE tenant = $1", a)
    with adversary.attempt("crypto: insert a data key row for another tenant", asyncpg.InsufficientPrivilegeError):
        async with pools.tx(a) as conn:
            await conn.execute("INSERT INTO vigil_tenant_keys (tenant, key_id, wrapped_key, kek_id, active) "
                               "VALUES ($1, 99, '\\x00', 'x', false)", b)
    async with pools.tx(a) as conn:
        status = await conn.execute("UPDATE vigil_tenant_keys SET active = false WHERE tenant = $1", b)
    adversary.check("crypto: deactivate another tenant's key", status == "UPDATE 0", status)
    # a wrapped key copied from B's row into A's (by someone with table access) does not unwrap as A's
    async with admin_pool.acquire() as conn:
        await conn.execute("INSERT INTO vigil_tenant_keys (tenant, key_id, wrapped_key, kek_id, active) "
                           "SELECT $1, 50, wrapped_key, kek_id, false FROM vigil_tenant_keys "
                           "WHERE tenant = $2 AND key_id = 1", a, b)
    blob_b = await keyring.encrypt(b, NOTE, "dlq")
    forged = blob_b[:4] + (50).to_bytes(4, "big") + blob_b[8:]
    with adversary.attempt("crypto: use B's wrapped key copied into A's key table", CryptoError):
        await Keyring(pools).decrypt(a, forged, "dlq")


async def test_keys_rotate_command(stack, provision, monkeypatch):
    from services.cli import app

    tenant = await provision()
    monkeypatch.setenv("VIGIL_POSTGRES_DSN", stack.postgres_dsn)
    monkeypatch.setenv("VIGIL_REDIS_URL", stack.redis_url)
    monkeypatch.setenv("VIGIL_ENV", "test")
    monkeypatch.delenv("VIGIL_MASTER_KEY", raising=False)
    monkeypatch.delenv("VIGIL_MASTER_KEY_FILE", raising=False)
    runner = CliRunner()
    # the command runs its own event loop; run it off this test's loop
    result = await asyncio.to_thread(runner.invoke, app, ["keys", "rotate", "--tenant", tenant])
    assert result.exit_code == 0, result.output
    result2 = await asyncio.to_thread(runner.invoke, app, ["keys", "rotate", "--tenant", tenant])
    assert result2.exit_code == 0, result2.output
    # no key existed before the first rotation, so that one created key 1; the second made key 2
    assert "active data key is now 1" in result.output and "active data key is now 2" in result2.output
    listed = await asyncio.to_thread(runner.invoke, app, ["keys", "list", "--tenant", tenant, "--json"])
    assert '"key_id": 2, "active": true' in listed.output and '"key_id": 1, "active": false' in listed.output
    bad = await asyncio.to_thread(runner.invoke, app, ["keys", "rotate", "--tenant", "Not A Tenant"])
    assert bad.exit_code == 2 and "invalid tenant id" in bad.output


async def test_encrypting_inside_units_of_work_that_hold_the_whole_pool(stack, secrets, provision):
    """Units of work that encrypt (the decision ledger's quotes) hold a connection each; with a
    cold keyring, as many of them as the tenant's pool holds must not wait for a checkout none of
    them gives back: the key lookups use the tenant's read connection."""
    tenant = await provision()
    first = TenantPools(stack, secrets)
    try:
        await Keyring(first).encrypt(tenant, NOTE, "ledger-quote")  # the tenant's key exists
    finally:
        await first.close()
    pools = TenantPools(stack, secrets, max_size=3)
    keyring = Keyring(pools)  # a new process: nothing cached
    held = asyncio.Barrier(3)

    async def unit() -> bytes:
        async with pools.tx(tenant) as conn:
            await conn.execute("SELECT 1")
            await held.wait()  # every connection of the pool is checked out now
            return await keyring.encrypt(tenant, NOTE, "ledger-quote")

    try:
        blobs = await asyncio.wait_for(asyncio.gather(*(unit() for _ in range(3))), timeout=10)
        assert len({key_id_of(b) for b in blobs}) == 1
        rotated = await keyring.rotate(tenant)
        other = Keyring(pools)
        newer = await asyncio.wait_for(asyncio.gather(*(unit() for _ in range(3))), timeout=10)

        async def decrypt_in_unit(blob: bytes) -> bytes:
            async with pools.tx(tenant) as conn:
                await conn.execute("SELECT 1")
                await held.wait()
                return await other.decrypt(tenant, blob, "ledger-quote")
        assert await asyncio.wait_for(asyncio.gather(*(decrypt_in_unit(b) for b in newer)), timeout=10) == [NOTE] * 3
        assert {key_id_of(b) for b in newer} <= {rotated, key_id_of(blobs[0])}
    finally:
        await pools.close()
