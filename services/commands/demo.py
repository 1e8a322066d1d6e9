"""`vigil demo`: bring the stack up, onboard the demo tenants, push events through, summarize."""
from __future__ import annotations

import asyncio
import time
import uuid

import typer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from rich.console import Console
from rich.table import Table

from services.core import devstack
from services.core.config import Settings
from services.core.tenancy import Registry, Tenant
from services.core.topics import ensure_tenant_topics

DEMO_TENANTS = (
    Tenant(id="northvalley", display_name="North Valley Oncology", mode="active", hl7_facilities=("NORTHVALLEY",)),
    Tenant(id="lakeshore", display_name="Lakeshore Cancer Center", mode="active", hl7_facilities=("LAKESHORE",)),
)
ROUND_TRIP_TIMEOUT_S = 30

console = Console()


async def _round_trip(settings: Settings, tenant: Tenant) -> float:
    """Produce one event with acks=all and read it back; returns the latency in ms."""
    topic = tenant.topic("ehr-events")
    marker = uuid.uuid4().hex.encode()
    consumer = AIOKafkaConsumer(topic, group_id=f"vigil-demo-{uuid.uuid4().hex[:8]}", auto_offset_reset="latest",
                                **settings.kafka.client_kwargs())
    producer = AIOKafkaProducer(acks="all", **settings.kafka.client_kwargs())
    await consumer.start()
    await producer.start()
    try:
        while not consumer.assignment():
            await asyncio.sleep(0.05)
        await consumer.seek_to_end()
        started = time.perf_counter()
        await producer.send_and_wait(topic, marker, key=b"demo-patient")
        async with asyncio.timeout(ROUND_TRIP_TIMEOUT_S):
            while True:
                batch = await consumer.getmany(timeout_ms=500)
                if any(m.value == marker for msgs in batch.values() for m in msgs):
                    return (time.perf_counter() - started) * 1000
    finally:
        await producer.stop()
        await consumer.stop()


def run(keep: bool = False) -> None:
    settings = Settings.from_env()
    console.rule("Vigil demo")
    try:
        devstack.up(settings, log=lambda m: console.print(f"[dim]{m}[/]"))
    except devstack.DevStackError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2)
    registry = Registry.load(settings.tenants_file)
    for tenant in DEMO_TENANTS:
        if tenant.id not in registry:
            registry.put(tenant)
    registry.save()
    table = Table(title="Demo summary")
    for column in ("tenant", "topics created", "round trip (ms)"):
        table.add_column(column)
    for tenant in DEMO_TENANTS:
        created = asyncio.run(ensure_tenant_topics(settings, registry.get(tenant.id)))
        latency = asyncio.run(_round_trip(settings, registry.get(tenant.id)))
        table.add_row(tenant.id, str(len(created)), f"{latency:.1f}")
    console.print(table)
    if keep:
        console.print("stack stays up; `vigil dev down` stops it")
