"""Producing events: schema-checked, tenant-fenced, acknowledged by all in-sync replicas.

    pub = Publisher(settings, "northvalley")
    await pub.start()
    await pub.publish("ehr-events", event)    # returns once the broker acked (acks=all)
    await pub.stop()

``publish`` raises ``ValidationError`` before anything is sent if the payload does not
match its schema (or uses a property the schema marks deprecated, ``schemas.check_outgoing``) or the event belongs to another tenant, and ``PermissionError`` for a
topic outside ``vigil.<tenant>.``. The idempotent producer is not enabled (the broker does
not support InitProducerId); duplicates from producer retries carry the same event id and
are dropped by the consumer's ledger.
"""
from __future__ import annotations

import asyncio
import random
from functools import lru_cache

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

from services.core import schemas
from services.core.config import Settings
from services.core.errors import ValidationError
from services.core.events import Event, encode
from services.core.tenancy import check_tenant_id
from services.core.bus.topics import resolve

LINGER_MS = 5
#: 512 KiB per partition batch: a 500-record poll (~1 KiB each) fits without waiting for drains.
BATCH_SIZE = 512 * 1024
REQUEST_TIMEOUT_MS = 30_000


def make_producer(settings: Settings, tenant_id: str | None = None) -> AIOKafkaProducer:
    """acks=all producer; with ``tenant_id`` it logs in as that tenant's own Kafka user."""
    return AIOKafkaProducer(acks="all", enable_idempotence=False, linger_ms=LINGER_MS, max_batch_size=BATCH_SIZE,
                            request_timeout_ms=REQUEST_TIMEOUT_MS, **settings.kafka.client_kwargs(tenant_id))


class Publisher:
    def __init__(self, settings: Settings, tenant_id: str, producer: AIOKafkaProducer | None = None):
        self.tenant = check_tenant_id(tenant_id)
        self._settings = settings
        self._producer = producer
        self._owned = producer is None

    async def start(self) -> None:
        if self._producer is None:
            self._producer = make_producer(self._settings, self.tenant)
        if self._owned:
            await self._producer.start()

    async def stop(self) -> None:
        if self._owned and self._producer is not None:
            await self._producer.stop()

    async def __aenter__(self) -> "Publisher":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    def topic(self, stream: str) -> str:
        return resolve(self.tenant, stream)

    def check(self, event: Event) -> None:
        if event.tenant != self.tenant:
            raise ValidationError(f"event of tenant {event.tenant!r} cannot be published for {self.tenant!r}",
                                  code="tenant_mismatch")
        schemas.check_outgoing(event.type, event.data)

    async def send(self, stream: str, event: Event) -> asyncio.Future:
        """Validate and enqueue; returns the delivery future (await it for the broker ack)."""
        topic = self.topic(stream)
        self.check(event)
        record = encode(event)
        return await self._send_raw(topic, record.key, record.value, record.headers)

    async def publish(self, stream: str, event: Event) -> None:
        await (await self.send(stream, event))

    async def publish_many(self, stream: str, events: list[Event]) -> None:
        futures = [await self.send(stream, e) for e in events]
        await asyncio.gather(*futures)

    async def send_raw(self, topic: str, key: bytes | None, value: bytes,
                       headers: list[tuple[str, bytes]]) -> asyncio.Future:
        """Enqueue an already-encoded record (DLQ, retry topics); tenant prefix still enforced."""
        return await self._send_raw(resolve(self.tenant, topic), key, value, headers)

    async def send_records(self, records: list[tuple[str, bytes | None, bytes, list]]) -> list[asyncio.Future]:
        """Enqueue already-encoded ``(topic, key, value, headers)`` records as one batch per
        partition, in order; the delivery futures back (one per batch: await them all for the
        acks). Same partitions as ``send`` (the default partitioner: murmur2 of the key), a
        fraction of its per-record cost; tenant prefix enforced once per topic."""
        if self._producer is None:
            raise RuntimeError("Publisher.start() was not called")
        producer, partitions, batches, futures = self._producer, {}, {}, []
        for topic, key, value, headers in records:
            count = partitions.get(topic)
            if count is None:
                count = partitions[topic] = len(await producer.partitions_for(resolve(self.tenant, topic)))
            tp = (topic, partition_of(key, count))
            batch = batches.get(tp)
            if batch is None:
                batch = batches[tp] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:  # full: send it
                futures.append(await producer.send_batch(batch, topic, partition=tp[1]))
                batch = batches[tp] = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None, headers=headers)
        for (topic, partition), batch in batches.items():
            batch.close()  # complete: goes out now instead of lingering for records that will not come
            futures.append(await producer.send_batch(batch, topic, partition=partition))
        return futures

    async def _send_raw(self, topic, key, value, headers) -> asyncio.Future:
        if self._producer is None:
            raise RuntimeError("Publisher.start() was not called")
        return await self._producer.send(topic, value, key=key, headers=headers)


def partition_of(key: bytes | None, count: int) -> int:
    """The partition the default partitioner picks: murmur2 of the key (a keyless record: any)."""
    return random.randrange(count) if key is None else _keyed_partition(key, count)


@lru_cache(maxsize=65536)  # patients recur from batch to batch
def _keyed_partition(key: bytes, count: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % count
