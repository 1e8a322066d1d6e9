"""Explicit topic creation from the tenant registry (never rely on broker auto-create)."""
from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from services.core.config import Settings
from services.core.tenancy import STREAMS, Tenant, topic_name

ADMIN_TIMEOUT_MS = 15_000


async def ensure_topics(settings: Settings, names: list[str], partitions: int) -> list[str]:
    """Create the named topics that do not exist yet; returns those created now."""
    admin = AIOKafkaAdminClient(request_timeout_ms=ADMIN_TIMEOUT_MS, **settings.kafka.client_kwargs())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        created = []
        for name in missing:
            try:
                await admin.create_topics([NewTopic(name=name, num_partitions=partitions, replication_factor=1)])
                created.append(name)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        await admin.close()


def tenant_topics(tenant: Tenant, extra_streams: tuple[str, ...] = ()) -> list[str]:
    return [topic_name(tenant.id, s) for s in (*STREAMS, *extra_streams)]


async def ensure_tenant_topics(settings: Settings, tenant: Tenant, extra_streams: tuple[str, ...] = ()) -> list[str]:
    return await ensure_topics(settings, tenant_topics(tenant, extra_streams), tenant.partitions)
