"""Kafka, client side: a tenant's Publisher refuses every topic outside vigil.<tenant>. and every
event of another tenant, before anything reaches the broker."""
from __future__ import annotations

import pytest

from services.core.bus.publisher import Publisher
from services.core.errors import ValidationError
from services.core.events import Event
from services.core.tenancy import Tenant
from services.core.topics import ensure_tenant_topics


@pytest.fixture
async def publisher(stack, tenant_id):
    other = "o" + tenant_id[1:]
    await ensure_tenant_topics(stack, Tenant(id=tenant_id, partitions=1))
    pub = Publisher(stack, tenant_id)
    await pub.start()
    yield pub, tenant_id, other
    await pub.stop()


async def test_publisher_stays_inside_its_prefix(publisher, adversary):
    pub, tenant, other = publisher
    ack = await (await pub.send_raw(f"vigil.{tenant}.dlq", b"patient-1", b"{}", []))  # own topic: accepted
    assert ack.topic == f"vigil.{tenant}.dlq"
    event = Event.new("vigil.ehr.note.created", source="test", tenant=tenant, key="patient-1", data={})
    attacks = [
        ("kafka: publish to another tenant's stream by full topic name",
         lambda: pub.publish(f"vigil.{other}.ehr-events", event)),
        ("kafka: raw send to another tenant's DLQ", lambda: pub.send_raw(f"vigil.{other}.dlq", None, b"x", [])),
        ("kafka: raw send to another tenant's retry topic",
         lambda: pub.send_raw(f"vigil.{other}.extraction.retry.1", None, b"x", [])),
        ("kafka: raw send to a topic that shares the tenant id as a prefix",
         lambda: pub.send_raw(f"vigil.{tenant}x.dlq", None, b"x", [])),
        ("kafka: raw send to the bare name of another tenant", lambda: pub.send_raw(f"vigil.{other}", None, b"x", [])),
    ]
    for name, attack in attacks:
        with adversary.attempt(name, PermissionError):
            await attack()
    # a bare name is a stream of the publisher's own tenant, never a topic of its own
    resolved = pub.topic("__consumer_offsets")
    adversary.check("kafka: a bare name reaches the broker's internal offsets topic",
                    resolved == f"vigil.{tenant}.__consumer_offsets", resolved)
    forged = Event.new("vigil.ehr.note.created", source="test", tenant=other, key="patient-1", data={})
    with adversary.attempt("kafka: publish an event whose tenant is another tenant", ValidationError) as at:
        await pub.publish("ehr-events", forged)
    assert at.error.code == "tenant_mismatch"
