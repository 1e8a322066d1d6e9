"""The processed-event ledger on the real Redis: batch lookups and marks through the scripts."""
from __future__ import annotations

import uuid

import pytest

from services.core import kv
from services.core.bus.ledger import Ledger

pytestmark = pytest.mark.integration


@pytest.fixture
async def ledger(stack, tenant_id):
    redis = kv.admin_client(stack)
    yield Ledger(redis, tenant_id, "ledger-test", ttl_s=120)
    names = [name async for name in redis.scan_iter(match=f"vigil:{tenant_id}:*", count=10_000)]
    if names:
        await redis.unlink(*names)
    await redis.aclose()


async def test_lookup_answers_per_id_and_per_key_across_chunks(ledger):
    ids = [str(uuid.uuid4()) for _ in range(2500)]  # more than one EXISTS / MGET chunk (1000 keys)
    keys = [f"patient-{i}" for i in range(1200)] + [None]
    assert await ledger.lookup(ids, keys) == (set(), {})  # nothing done: the single-EXISTS answer

    done = set(ids[::7]) | {ids[0], ids[999], ids[1000], ids[-1]}
    await ledger.mark_done(sorted(done))
    blockers = {keys[0]: ids[1], keys[999]: ids[2], keys[1000]: ids[3], keys[1199]: ids[4], None: ids[5]}
    for key, event_id in blockers.items():
        await ledger.block(key, event_id)

    found, blocked = await ledger.lookup(ids, keys)
    assert found == done
    assert blocked == blockers
    assert await ledger.lookup([], []) == (set(), {})
    assert await ledger.lookup(ids[:3], []) == ({ids[0]}, {})


async def test_marks_expire_and_unusable_ids_are_refused(ledger):
    ids = [str(uuid.uuid4()) for _ in range(3)]
    await ledger.mark_done(ids)
    ttl = await ledger.redis.ttl(ledger._done_prefix + ids[0])
    assert 0 < ttl <= 120
    for bad in (["a\nb"], ["", "x"], ["x", ""]):
        with pytest.raises(ValueError):
            await ledger.mark_done(bad)
        with pytest.raises(ValueError):
            await ledger.lookup(bad, [])


async def test_scripts_go_by_digest_and_survive_a_script_flush(ledger):
    """The scripts are sent as EVALSHA; a server that lost them (restart, SCRIPT FLUSH) gets them again."""
    ids = [str(uuid.uuid4()) for _ in range(3)]
    await ledger.mark_done(ids[:1])
    await ledger.redis.script_flush()
    assert await ledger.lookup(ids, []) == ({ids[0]}, {})  # loaded again on NOSCRIPT
    await ledger.redis.script_flush()
    await ledger.mark_done(ids[1:2])
    assert await ledger.lookup(ids, []) == (set(ids[:2]), {})
    commands = await ledger.redis.info("commandstats")
    assert commands.get("cmdstat_evalsha", {}).get("calls", 0) >= 4
