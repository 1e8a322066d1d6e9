"""One dead-letter table with one writer: the stage runtime only publishes dead letters to the dlq
topic (stack and attempt history in its headers), the control service indexes them into
``vigil_dlq_entries`` and serves them, and the demo's summary counts them through control's API."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from aiokafka.admin import AIOKafkaAdminClient

from services.commands.demo.summary import RunPeriod, dead_letter_count
from services.core.bus.failures import DLQ_DETAIL_HEADERS
from services.core.events import header_value
from services.core.tenancy import topic_name
from tests.fixtures.control import count_records, dead_letter, probe_event
from vigil.v1 import control_pb2 as pb


async def test_runtime_publishes_the_whole_dead_letter_and_control_serves_it(stack, control, provision, admin_pool):
    tenant = await provision()
    control.tenants.append(tenant)
    since = datetime.now(timezone.utc) - timedelta(seconds=1)
    events = [probe_event(tenant, i) for i in range(2)]
    await dead_letter(stack, tenant, events)

    records = [r for r in await count_records(stack, topic_name(tenant, "dlq"))
               if header_value(r.headers, "ce_id") in {e.id for e in events}]
    assert len(records) == 2
    for record in records:
        assert "probe handler refused the event" in header_value(record.headers, "dlq-stack")
        assert json.loads(header_value(record.headers, "dlq-history"))[-1]["code"] == "probe_refused"
    # the runtime wrote no table (an older version's table, where it exists, has nothing of this tenant)
    if await admin_pool.fetchval("SELECT to_regclass('vigil_dead_letters') IS NOT NULL"):
        assert await admin_pool.fetchval("SELECT count(*) FROM vigil_dead_letters WHERE tenant = $1", tenant) == 0

    async with control.client(control.token(tenant)) as cc:
        page = await cc.call("ListDeadLetters", pb.ListDeadLettersRequest())
        assert page.total == 2
        detail = await cc.call("GetDeadLetter", pb.GetDeadLetterRequest(id=page.items[0].id))
    assert "Traceback" in detail.stack and "probe handler refused the event" in detail.stack
    assert json.loads(detail.attempt_history_json)[-1]["code"] == "probe_refused"
    kept = {h.key for h in detail.headers}
    assert "dlq-stack-fingerprint" in kept and not kept & set(DLQ_DETAIL_HEADERS)  # the stack is kept encrypted only
    stored = await admin_pool.fetch("SELECT headers::text AS h, stack_enc FROM vigil_dlq_entries WHERE tenant = $1",
                                    tenant)
    assert len(stored) == 2 and all(b"Traceback" not in bytes(r["stack_enc"]) and "Traceback" not in r["h"]
                                    for r in stored)

    # the demo's summary: a platform-admin client of control, never SQL
    async with control.client(control.admin_token()) as cc:
        assert await dead_letter_count(cc, tenant, RunPeriod(since)) == 2
        later = RunPeriod(datetime.now(timezone.utc) + timedelta(seconds=5))
        assert await dead_letter_count(cc, tenant, later) == 0


async def _delete_topics(settings, tenant: str) -> None:
    """Delete the tenant's input and dlq topics, as offboarding does (the stage creates them again)."""
    admin = AIOKafkaAdminClient(**settings.kafka.client_kwargs())
    await admin.start()
    try:
        answer = await admin.delete_topics([topic_name(tenant, "ehr-events"), topic_name(tenant, "dlq")])
    finally:
        await admin.close()
    assert [code for _, code in answer.topic_error_codes] == [0, 0]


async def test_a_dlq_topic_created_again_is_indexed_from_its_start(stack, control, provision, admin_pool):
    """A tenant's topics deleted and created again (onboarded again under its id; a dev broker
    restarted) start at offset 0: the index reads the new topic from its start, and a dead letter
    at an old record's coordinates is a row of its own."""
    tenant = await provision()
    control.tenants.append(tenant)

    async def listed() -> set[str]:
        await control.app.indexer.sync([tenant])
        async with control.client(control.token(tenant)) as cc:
            page = await cc.call("ListDeadLetters", pb.ListDeadLettersRequest(page_size=100))
        return {item.event_id for item in page.items}

    runs: dict[str, list] = {}
    # one patient: every event in one partition, so the second run passes the first run's position
    # (5 records against 3) and the third stops short of it (1 against 5)
    for run, n in (("first", 3), ("again", 5), ("shorter", 1)):
        if runs:
            await _delete_topics(stack, tenant)
        runs[run] = [probe_event(tenant, i, patient="pat-A", run=run) for i in range(n)]
        await dead_letter(stack, tenant, runs[run])
        assert await listed() == {e.id for events in runs.values() for e in events}, run
        # nothing new: another sync reads no record again (the dev broker's end offsets can lie
        # below the indexed position, which alone must not look like a new topic)
        read_again = []
        indexer = control.app.indexer
        index = indexer._index

        async def counting(tenant_id, records):
            read_again.extend(records)
            return await index(tenant_id, records)
        indexer._index = counting
        try:
            assert await indexer.sync([tenant]) == 0 and await indexer.sync([tenant]) == 0
        finally:
            indexer._index = index
        assert read_again == [], run
    rows = await admin_pool.fetch("SELECT original_offset, dlq_offset FROM vigil_dlq_entries WHERE tenant = $1",
                                  tenant)
    assert sorted(r["original_offset"] for r in rows) == [0, 0, 0, 1, 1, 2, 2, 3, 4]
