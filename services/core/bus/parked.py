"""Reading a parked event back: one record at a known partition and offset.

Parked events are kept as coordinates only (``ledger.park``); when the event blocking their
patient resolves, the runtime reads each one back here, with an assign-mode consumer of its
own (no group, nothing committed), created on first use.
"""
from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.core.config import Settings
from services.core.errors import RetryableError


class ParkedReader:
    def __init__(self, settings: Settings, tenant: str, timeout_s: float):
        self.settings, self.tenant, self.timeout_s = settings, tenant, timeout_s
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()

    async def read(self, tp: TopicPartition, offset: int):
        """The record at ``offset``; ``RetryableError`` if it is gone (retention) or does not come."""
        async with self._lock:
            if self._consumer is None:
                self._consumer = AIOKafkaConsumer(enable_auto_commit=False,
                                                  **self.settings.kafka.client_kwargs(self.tenant))
                await self._consumer.start()
            self._consumer.assign([tp])
            self._consumer.seek(tp, offset)
            async with asyncio.timeout(self.timeout_s):
                while True:
                    for m in (await self._consumer.getmany(tp, timeout_ms=500, max_records=1)).get(tp, []):
                        if m.offset == offset:
                            return m
                        raise RetryableError(f"parked offset {offset} no longer readable", code="parked_missing")

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
