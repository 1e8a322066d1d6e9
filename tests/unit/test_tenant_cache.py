"""services.core.tenantcache: one resource per tenant key, replaced when its ident changes, evicted
and closed on demand, closed all at once, never shared between tenants."""
from __future__ import annotations

import asyncio

import pytest

from services.core.tenantcache import TenantCache


class Resource:
    made = 0

    def __init__(self, tenant: str, ident=None):
        Resource.made += 1
        self.tenant, self.ident, self.closed = tenant, ident, 0

    async def close(self) -> None:
        self.closed += 1


async def test_one_resource_per_tenant_and_tenants_never_share():
    cache: TenantCache[Resource] = TenantCache()
    a1 = await cache.get("a", lambda: Resource("a"))
    a2 = await cache.get("a", lambda: Resource("a-again"))
    b = await cache.get("b", lambda: Resource("b"))
    assert a1 is a2 and a1.tenant == "a"
    assert b is not a1 and b.tenant == "b"
    assert cache.get_now(("tools", "a"), lambda: Resource("tools-a")).tenant == "tools-a"
    assert sorted(map(str, cache.keys())) == sorted(["a", "b", str(("tools", "a"))])
    await cache.evict("a")
    assert b.closed == 0 and cache.peek("b") is b          # evicting one tenant leaves the others


async def test_async_factory_is_awaited_and_made_once_under_concurrency():
    cache: TenantCache[Resource] = TenantCache()
    started = 0

    async def make(tenant: str) -> Resource:
        nonlocal started
        started += 1
        await asyncio.sleep(0.01)
        return Resource(tenant)

    results = await asyncio.gather(*(cache.get("a", lambda: make("a")) for _ in range(5)),
                                   cache.get("b", lambda: make("b")))
    assert started == 2
    assert len({id(r) for r in results[:5]}) == 1 and results[5].tenant == "b"


async def test_a_slow_tenant_does_not_block_another():
    cache: TenantCache[Resource] = TenantCache()
    release = asyncio.Event()

    async def slow() -> Resource:
        await release.wait()
        return Resource("slow")

    pending = asyncio.create_task(cache.get("slow", slow))
    await asyncio.sleep(0)
    fast = await asyncio.wait_for(cache.get("fast", lambda: Resource("fast")), timeout=1)
    assert fast.tenant == "fast" and not pending.done()
    release.set()
    assert (await pending).tenant == "slow"


async def test_changed_ident_replaces_and_closes_the_old_resource():
    cache: TenantCache[Resource] = TenantCache()
    old = await cache.get("a", lambda: Resource("a", "url-1"), ident="url-1")
    same = await cache.get("a", lambda: Resource("a", "url-1"), ident="url-1")
    assert same is old and old.closed == 0
    new = await cache.get("a", lambda: Resource("a", "url-2"), ident="url-2")
    assert new is not old and new.ident == "url-2"
    assert old.closed == 1 and new.closed == 0


async def test_get_now_replaces_and_closes_in_the_background():
    cache: TenantCache[Resource] = TenantCache()
    old = cache.get_now("a", lambda: Resource("a"), ident=1)
    new = cache.get_now("a", lambda: Resource("a"), ident=2)
    assert new is not old
    await cache.close()                     # waits for the background close of the replaced one
    assert old.closed == 1 and new.closed == 1


async def test_get_now_refuses_an_async_factory():
    cache: TenantCache[Resource] = TenantCache()

    async def make() -> Resource:
        return Resource("a")

    with pytest.raises(TypeError, match="synchronous factory"):
        cache.get_now("a", make)


async def test_evict_closes_one_and_the_next_get_makes_a_new_one():
    cache: TenantCache[Resource] = TenantCache()
    first = await cache.get("a", lambda: Resource("a"))
    assert await cache.evict("a") is True
    assert first.closed == 1 and "a" not in cache
    assert await cache.evict("a") is False
    second = await cache.get("a", lambda: Resource("a"))
    assert second is not first and second.closed == 0


async def test_a_failing_factory_caches_nothing():
    cache: TenantCache[Resource] = TenantCache()

    async def broken() -> Resource:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        await cache.get("a", broken)
    assert "a" not in cache
    assert (await cache.get("a", lambda: Resource("a"))).tenant == "a"


async def test_close_closes_every_resource_even_when_one_close_fails():
    class Broken(Resource):
        async def close(self) -> None:
            self.closed += 1
            raise OSError("already gone")

    cache: TenantCache[Resource] = TenantCache()
    good = [await cache.get(t, lambda t=t: Resource(t)) for t in ("a", "c")]
    bad = await cache.get("b", lambda: Broken("b"))
    await cache.close()
    assert [r.closed for r in good] == [1, 1] and bad.closed == 1
    assert len(cache) == 0


async def test_the_close_function_is_the_callers():
    closed: list[str] = []
    cache: TenantCache[dict] = TenantCache(close=lambda held: closed.append(held["name"]))
    await cache.get("a", lambda: {"name": "channel-a"})
    await cache.close()
    assert closed == ["channel-a"]


async def test_default_close_needs_a_close_method():
    cache: TenantCache[object] = TenantCache()
    cache.get_now("a", object)
    # the failure is logged, not raised: the other resources still close
    await cache.close()
    assert len(cache) == 0


async def test_an_awaitable_resource_is_held_as_it_is():
    class AwaitableClient(Resource):            # like redis.asyncio.Redis: awaiting it initializes it
        def __await__(self):
            raise AssertionError("the cache must not await the resource itself")
            yield

    cache: TenantCache[Resource] = TenantCache()
    held = cache.get_now("a", lambda: AwaitableClient("a"))
    assert await cache.get("b", lambda: AwaitableClient("b")) is not held
    await cache.close()
    assert held.closed == 1
