"""One resource per tenant (a connection pool, a client, a channel, a link), made on first use and
closed by the cache: the one way a process holds per-tenant resources.

    pools = TenantCache(close=lambda pool: pool.close())
    pool = await pools.get(tenant, lambda: asyncpg.create_pool(...))          # async factory
    redis = clients.get_now(tenant, lambda: kv.tenant_client(settings, tenant))  # sync factory
    ...
    await pools.close()

- A key is a tenant id, or a tuple naming the tenant and what else tells resources apart
  (``("tools", tenant)``); no two keys ever share a resource, so tenants stay isolated.
- ``ident`` is what the resource was made from (a base URL and credentials, an endpoint, a link
  target). When a caller passes a different ident for a key, the held resource is replaced and
  the old one closed: a tenant whose settings changed gets a new client without a restart.
- ``evict(key)`` closes and forgets one tenant's resource (a broken link, a removed tenant);
  ``close()`` closes them all. Closing errors are logged (type only) and never stop the others.
- Async factories run under a per-key lock: a tenant's slow start-up never blocks another
  tenant, and two callers of one key make one resource. A factory that raises caches nothing;
  the next call tries again.
"""
from __future__ import annotations

import asyncio
import inspect
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Generic, Hashable, TypeVar

from services.core.logging import get_logger

log = get_logger("vigil.core.tenantcache")

R = TypeVar("R")
Factory = Callable[[], "R | Awaitable[R]"]
Closer = Callable[[Any], "Awaitable[None] | None"]


@dataclass
class _Held(Generic[R]):
    ident: Any
    resource: R


def _pending(made: Any) -> bool:
    """Did an async factory return a coroutine or future? (Not just "awaitable": some clients, such
    as redis.asyncio.Redis, are awaitable objects themselves.)"""
    return inspect.iscoroutine(made) or asyncio.isfuture(made)


async def close_resource(resource: Any) -> None:
    """Default closer: ``aclose()``, else ``close()``, else ``stop()``, awaited when a coroutine."""
    for name in ("aclose", "close", "stop"):
        method = getattr(resource, name, None)
        if callable(method):
            result = method()
            if inspect.isawaitable(result):
                await result
            return
    raise TypeError(f"{type(resource).__name__} has no aclose/close/stop; give TenantCache a close function")


class TenantCache(Generic[R]):
    def __init__(self, close: Closer | None = None, *, name: str = "resource"):
        self._closer = close or close_resource
        self.name = name
        self._held: dict[Hashable, _Held[R]] = {}
        self._locks: dict[Hashable, asyncio.Lock] = {}
        self._retiring: set[asyncio.Task] = set()

    def __contains__(self, key: Hashable) -> bool:
        return key in self._held

    def __len__(self) -> int:
        return len(self._held)

    def keys(self) -> list[Hashable]:
        return list(self._held)

    def peek(self, key: Hashable) -> R | None:
        """The resource held for ``key``, or None; makes nothing."""
        held = self._held.get(key)
        return None if held is None else held.resource

    async def get(self, key: Hashable, make: Factory, *, ident: Any = None) -> R:
        held = self._held.get(key)
        if held is not None and held.ident == ident:      # the common case: no lock to take
            return held.resource
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            held = self._held.get(key)
            if held is not None and held.ident == ident:
                return held.resource
            resource = make()
            if _pending(resource):
                resource = await resource
            self._held[key] = _Held(ident, resource)
        if held is not None:
            await self._close_one(key, held.resource)
        return resource

    def get_now(self, key: Hashable, make: Callable[[], R], *, ident: Any = None) -> R:
        """``get`` for a synchronous factory, callable outside a coroutine's await (a Redis client, a
        gRPC channel). A replaced resource is closed in the background (``close()`` waits for it)."""
        held = self._held.get(key)
        if held is not None and held.ident == ident:
            return held.resource
        resource = make()
        if _pending(resource):
            if inspect.iscoroutine(resource):
                resource.close()
            raise TypeError("get_now needs a synchronous factory; use await get()")
        self._held[key] = _Held(ident, resource)
        if held is not None:
            self._retire(key, held.resource)
        return resource

    async def evict(self, key: Hashable) -> bool:
        """Close and forget ``key``'s resource; False when none was held."""
        held = self._held.pop(key, None)
        if held is None:
            return False
        await self._close_one(key, held.resource)
        return True

    async def close(self) -> None:
        held, self._held = list(self._held.items()), {}
        await asyncio.gather(*(self._close_one(key, h.resource) for key, h in held))
        while self._retiring:
            await asyncio.gather(*list(self._retiring), return_exceptions=True)

    def _retire(self, key: Hashable, resource: R) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous caller): nothing can await the close
            log.warning("tenantcache.close_skipped", cache=self.name)
            return
        task = loop.create_task(self._close_one(key, resource))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _close_one(self, key: Hashable, resource: R) -> None:
        try:
            result = self._closer(resource)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:  # one bad close must not leak the others
            log.warning("tenantcache.close_failed", cache=self.name, error_type=type(exc).__name__)
