"""One Publisher (own producer, the tenant's own Kafka identity, tenant-fenced, schema-checked)
per tenant: a tenant's events never share a client with another tenant's."""
from __future__ import annotations

from services.core.bus.publisher import Publisher
from services.core.config import Settings
from services.core.events import Event, encode_parts
from services.core.tenantcache import TenantCache
from services.ingest.liveness import PublishHealth


class Publishers:
    def __init__(self, settings: Settings):
        self.settings = settings
        self._by_tenant: TenantCache[Publisher] = TenantCache(close=lambda pub: pub.stop(), name="publisher")
        self._started = False
        self.health = PublishHealth()

    async def start(self) -> None:
        self._started = True

    async def stop(self) -> None:
        await self._by_tenant.close()
        self._started = False

    async def for_tenant(self, tenant: str) -> Publisher:
        if not self._started:
            raise RuntimeError("Publishers.start() was not called")

        async def make() -> Publisher:
            pub = Publisher(self.settings, tenant)
            await pub.start()
            return pub

        return await self._by_tenant.get(tenant, make)

    async def publish(self, tenant: str, routed: list[tuple[str, Event]]) -> None:
        """Send every (stream, event) and return once the broker acknowledged all of them.

        The records go out as closed batches (``Publisher.send_records``): a caller waiting for
        the acks does not also wait out the producer's linger for records that will not come."""
        if not routed:
            return
        pub = await self.for_tenant(tenant)
        records = []
        for stream, event in routed:
            pub.check(event)
            key, value, headers = encode_parts(event)
            records.append((pub.topic(stream), key, value, headers))
        try:
            for future in await pub.send_records(records):
                await future
        except Exception:
            self.health.failed()
            raise
        self.health.succeeded()
