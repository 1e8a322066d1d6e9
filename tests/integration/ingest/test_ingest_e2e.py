"""End to end with the sandbox's real Subscriptions: EHR write -> rest-hook -> receiver -> Kafka."""
from __future__ import annotations

import asyncio
import base64
from dataclasses import replace

import pytest
import uvicorn

from services.ingest.receiver.app import ReceiverContext, create_app
from services.ingest.receiver.auth import channel_header, signing_secret
from services.ingest.subscribe import TOPICS, ensure_subscriptions
from tests.fixtures.ports import free_port



class Receiver:
    def __init__(self, ingest, secrets, port: int):
        self.app = create_app(ReceiverContext(ingest.registry, secrets, ingest.handler))
        self.port = port
        self.server = None
        self.task = None

    async def start(self) -> None:
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    access_log=False, lifespan="off"))
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        self.server.should_exit = True
        await self.task


@pytest.fixture
async def receiver(ingest, secrets):
    r = Receiver(ingest, secrets, free_port())
    await r.start()
    yield r
    if not r.task.done():
        await r.stop()


def note(patient: str, text: str) -> dict:
    return {"resourceType": "DocumentReference", "status": "current", "subject": {"reference": f"Patient/{patient}"},
            "content": [{"attachment": {"contentType": "text/plain", "data": base64.b64encode(text.encode()).decode()}}]}


async def wait_for(predicate, timeout: float = 30.0, step: float = 0.3):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value or asyncio.get_running_loop().time() > deadline:
            return value
        await asyncio.sleep(step)


async def subscribe(ingest, receiver, secrets, content: str) -> str:
    t, client = ingest.tenant.id, ingest.ehr.client
    topic = replace(TOPICS[0], content=content)
    await ingest.ehr.admin.set_notify_secret(t, signing_secret(secrets, t))  # the EHR signs its notifications
    rows = await ensure_subscriptions(client, f"http://127.0.0.1:{receiver.port}/notify/{t}",
                                      channel_header(secrets, t), [topic])
    sub = rows[0]["id"]

    async def active():
        return (await client.read("Subscription", sub)).get("status") == "active"
    assert await wait_for(active), "the EHR's handshake to the receiver did not succeed"
    return sub


async def published(ingest, n):
    events = await ingest.events(want=n, timeout=1, settle=0)
    return events if len(events) >= n else None


@pytest.mark.parametrize("content", ["empty", "full-resource"])
async def test_new_note_arrives_once_in_each_content_level(ingest, receiver, secrets, content):
    """``empty`` is completed with the sandbox's real ``$events`` and a vread; id-only is below."""
    client = ingest.ehr.client
    sub = await subscribe(ingest, receiver, secrets, content)
    patient = (await client.create({"resourceType": "Patient"})).resource["id"]
    doc = (await client.create(note(patient, "a note"))).resource
    updated = (await client.update({**doc, "docStatus": "final"})).resource
    events = await wait_for(lambda: published(ingest, 2))
    assert events is not None
    await asyncio.sleep(1.0)
    events = await ingest.events(want=3, timeout=1, settle=0)
    assert [(e.data["id"], e.data["versionId"], e.data["action"], e.data["eventNumber"]) for e in
            sorted(events, key=lambda e: e.data["eventNumber"])] == [(doc["id"], "1", "create", 1),
                                                                     (updated["id"], "2", "update", 2)]
    assert all(e.data["subscription"] == sub and e.key == patient for e in events)


async def test_new_note_arrives_once_and_outage_is_caught_up(ingest, receiver, secrets):
    t, client = ingest.tenant.id, ingest.ehr.client
    sub = await subscribe(ingest, receiver, secrets, "id-only")

    patient = (await client.create({"resourceType": "Patient"})).resource["id"]
    first = (await client.create(note(patient, "first"))).resource

    events = await wait_for(lambda: published(ingest, 1))
    assert events and len(events) == 1
    assert events[0].data["id"] == first["id"] and events[0].data["origin"] == "subscription"
    assert events[0].data["eventNumber"] == 1 and events[0].data["subscription"] == sub

    # Receiver outage: notes written meanwhile are queued by the EHR and delivered in order later.
    await receiver.stop()
    during = [(await client.create(note(patient, f"during {i}"))).resource for i in range(3)]
    await asyncio.sleep(1.0)
    await receiver.start()
    events = await wait_for(lambda: published(ingest, 4), timeout=60)
    assert events is not None, "the outage was not caught up"
    await asyncio.sleep(1.5)  # any redelivery would land now
    events = await ingest.events(want=5, timeout=1, settle=0)
    assert sorted(e.data["id"] for e in events) == sorted([first["id"]] + [d["id"] for d in during])
    assert sorted(e.data["eventNumber"] for e in events) == [1, 2, 3, 4]
