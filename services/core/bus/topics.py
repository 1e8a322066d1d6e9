"""Topic names of a stage and explicit creation (input, retry topics, DLQ, outputs).

    vigil.<tenant>.<stream>            e.g. vigil.northvalley.findings
    vigil.<tenant>.<stage>.retry.<n>   n = 1 .. policy.levels
    vigil.<tenant>.dlq

All topics of a tenant have the same partition count, so a patient key maps to the same
partition number in the input and in every retry topic (the runtime relies on this).
"""
from __future__ import annotations

from typing import Iterable

from services.core import contracts
from services.core.config import Settings
from services.core.tenancy import STREAMS, Tenant, topic_name, topic_prefix
from services.core.topics import ensure_topics

DLQ_STREAM = contracts.DLQ


def retry_topic(tenant: str, stage: str, level: int) -> str:
    return topic_name(tenant, f"{stage}.retry.{level}")


def dlq_topic(tenant: str) -> str:
    return topic_name(tenant, DLQ_STREAM)


def resolve(tenant: str, stream_or_topic: str) -> str:
    """A stream name (``findings``) or a full topic; the result must be under the tenant prefix."""
    if stream_or_topic.startswith("vigil."):
        topic = stream_or_topic
    else:
        topic = topic_name(tenant, stream_or_topic)
    if not topic.startswith(topic_prefix(tenant)):
        raise PermissionError(f"topic {topic!r} is outside tenant {tenant!r}")
    return topic


def stage_topics(tenant: str, specs: Iterable) -> list[str]:
    """Every topic the given stages need beyond the tenant streams: their retry topics."""
    names: list[str] = []
    for spec in specs:
        names += [retry_topic(tenant, spec.name, n) for n in range(1, spec.retry.levels + 1)]
    return names


async def ensure_stage_topics(settings: Settings, tenant: Tenant, specs: Iterable = ()) -> list[str]:
    """Create the tenant's streams and the stages' retry topics; returns those created now."""
    names = [topic_name(tenant.id, s) for s in STREAMS] + stage_topics(tenant.id, specs)
    return await ensure_topics(settings, names, tenant.partitions)


async def topic_partitions(consumer, topic: str) -> set[int]:
    """The partitions of ``topic`` as the broker has them now (empty when it does not exist).

    The consumer's client is made to track the topic, so the metadata request names the tracked
    topics only. aiokafka's ``consumer.topics()`` and a refresh with nothing tracked ask for the
    metadata of every topic of the cluster: on a broker with many tenants that is a large answer
    to decode, for one topic's partitions.
    """
    client = consumer._client  # noqa: SLF001  (aiokafka has no public way to track a topic's metadata)
    await client.add_topic(topic)
    partitions = consumer.partitions_for_topic(topic)
    if partitions is None:  # tracked before it existed: refresh the tracked topics
        await client.force_metadata_update()
        partitions = consumer.partitions_for_topic(topic)
    return set(partitions or ())
