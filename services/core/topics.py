"""Explicit topic creation from the tenant registry (never rely on broker auto-create)."""
from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from services.core.config import Settings
from services.core.tenancy import STREAMS, Tenant, topic_name

ADMIN_TIMEOUT_MS = 15_000


async def ensure_topics(settings: Settings, names: list[str], partitions: int) -> list[str]:
    """Create the named topics that do not exist yet; returns those created now.

    One CreateTopics request for all of them; a topic that exists already answers
    TOPIC_ALREADY_EXISTS, which is not an error here. The cluster's topic list is never read:
    on a cluster with many tenants that is the whole metadata of every topic.
    """
    if not names:
        return []
    admin = AIOKafkaAdminClient(request_timeout_ms=ADMIN_TIMEOUT_MS, **settings.kafka.client_kwargs())
    await admin.start()
    try:
        response = await admin.create_topics(
            [NewTopic(name=n, num_partitions=partitions, replication_factor=1) for n in dict.fromkeys(names)])
        created = []
        for topic, code, *_ in response.topic_errors:
            if code == 0:
                created.append(topic)
            elif code != TopicAlreadyExistsError.errno:
                raise for_code(code)(f"creating topic {topic}")
        return created
    finally:
        await admin.close()


def tenant_topics(tenant: Tenant, extra_streams: tuple[str, ...] = ()) -> list[str]:
    return [topic_name(tenant.id, s) for s in (*STREAMS, *extra_streams)]


async def ensure_tenant_topics(settings: Settings, tenant: Tenant, extra_streams: tuple[str, ...] = ()) -> list[str]:
    return await ensure_topics(settings, tenant_topics(tenant, extra_streams), tenant.partitions)
