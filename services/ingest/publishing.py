"""One producer per process, one Publisher (tenant-fenced, schema-checked) per tenant on it."""
from __future__ import annotations

from services.core.bus.publisher import Publisher, make_producer
from services.core.config import Settings
from services.core.events import Event


class Publishers:
    def __init__(self, settings: Settings):
        self.settings = settings
        self._producer = None
        self._by_tenant: dict[str, Publisher] = {}

    async def start(self) -> None:
        if self._producer is None:
            self._producer = make_producer(self.settings)
            await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
            self._by_tenant.clear()

    def for_tenant(self, tenant: str) -> Publisher:
        if self._producer is None:
            raise RuntimeError("Publishers.start() was not called")
        pub = self._by_tenant.get(tenant)
        if pub is None:
            pub = self._by_tenant[tenant] = Publisher(self.settings, tenant, producer=self._producer)
        return pub

    async def publish(self, tenant: str, routed: list[tuple[str, Event]]) -> None:
        """Send every (stream, event) and return once the broker acknowledged all of them."""
        if not routed:
            return
        pub = self.for_tenant(tenant)
        futures = [await pub.send(stream, event) for stream, event in routed]
        for future in futures:
            await future
