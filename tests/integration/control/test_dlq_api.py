"""The control service over gRPC on loopback with real tokens: index, filters, paging, detail,
dry run, replay exactly once, loop guard, resume after an interruption, purge, stats."""
from __future__ import annotations

import asyncio
import json
import time

import pytest

from services.control import metrics
from services.core import kv
from services.core.bus.ledger import Ledger
from services.core.errors import NotFoundError, RetryableError, ValidationError
from services.core.events import header_value
from services.core.tenancy import topic_name
from tests.fixtures.control import StageHarness, count_records, dead_letter, probe_event, wait_for
from vigil.v1 import control_pb2 as pb


async def _seed(stack, control, provision, n=6):
    tenant = await provision()
    control.tenants.append(tenant)
    events = [probe_event(tenant, i) for i in range(n)]
    await dead_letter(stack, tenant, events[: n // 2], stage="probe")
    second = {e.id for e in events[n // 2:]}  # the "other" stage also reads the first half: it passes those
    await dead_letter(stack, tenant, events[n // 2:], stage="other",
                      fail=lambda e: RetryableError("dependency down", code="dep_down") if e.id in second else None)
    return tenant, events


async def _replay(cc, request) -> list:
    return [step async for step in cc.stream("Replay", request)]


async def test_list_filters_paging_and_detail(stack, control, provision):
    tenant, events = await _seed(stack, control, provision)
    async with control.client(control.token(tenant)) as cc:
        everything = await cc.call("ListDeadLetters", pb.ListDeadLettersRequest())
        assert everything.total == 6 and len(everything.items) == 6
        assert {i.event_id for i in everything.items} == {e.id for e in events}
        assert {i.stage for i in everything.items} == {"probe", "other"}

        probe = await cc.call("ListDeadLetters", pb.ListDeadLettersRequest(filter=pb.DeadLetterFilter(stage="probe")))
        assert probe.total == 3 and {i.error_class for i in probe.items} == {"FatalError"}
        by_class = await cc.call("ListDeadLetters", pb.ListDeadLettersRequest(
            filter=pb.DeadLetterFilter(error_class="RetryableError")))
        assert {i.event_id for i in by_class.items} == {e.id for e in events[3:]}
        fp = by_class.items[0].fingerprint
        by_fp = await cc.call("ListDeadLetters", pb.ListDeadLettersRequest(filter=pb.DeadLetterFilter(fingerprint=fp)))
        assert by_fp.total == 3
        by_patient = await cc.call("ListDeadLetters", pb.ListDeadLettersRequest(
            filter=pb.DeadLetterFilter(patient_key="pat-4")))
        assert [i.event_id for i in by_patient.items] == [events[4].id]
        by_type = await cc.call("ListDeadLetters", pb.ListDeadLettersRequest(
            filter=pb.DeadLetterFilter(event_type="vigil.other.type")))
        assert by_type.total == 0
        newest = max(i.last_failure_ms for i in everything.items)
        later = await cc.call("ListDeadLetters", pb.ListDeadLettersRequest(
            filter=pb.DeadLetterFilter(since_ms=newest + 1)))
        assert later.total == 0
        window = await cc.call("ListDeadLetters", pb.ListDeadLettersRequest(
            filter=pb.DeadLetterFilter(since_ms=newest, until_ms=newest + 1)))
        assert window.total >= 1

        seen, token = [], ""
        while True:
            page = await cc.call("ListDeadLetters", pb.ListDeadLettersRequest(page_size=4, page_token=token))
            seen += [i.id for i in page.items]
            token = page.next_page_token
            if not token:
                break
        assert len(seen) == 6 and len(set(seen)) == 6
        assert seen == [i.id for i in everything.items]  # newest first, stable across pages
        with pytest.raises(ValidationError):
            await cc.call("ListDeadLetters", pb.ListDeadLettersRequest(page_token="garbage!"))

        target = next(i for i in everything.items if i.event_id == events[0].id)
        detail = await cc.call("GetDeadLetter", pb.GetDeadLetterRequest(id=target.id, include_payload=True))
        headers = {h.key: h.value for h in detail.headers}
        assert headers["dlq-stage"] == "probe" and headers["ce_id"] == events[0].id
        assert headers["dlq-original-topic"] == topic_name(tenant, "ehr-events")
        assert "probe handler refused the event" in detail.stack and "Traceback" in detail.stack
        assert json.loads(detail.attempt_history_json)[0]["class"] == "FatalError"
        assert detail.payload_included and json.loads(detail.payload) == events[0].data
        with pytest.raises(NotFoundError):
            await cc.call("GetDeadLetter", pb.GetDeadLetterRequest(id="no-such-id"))

    async with control.client(control.admin_token()) as cc:
        as_admin = await cc.call("GetDeadLetter", pb.GetDeadLetterRequest(id=target.id, include_payload=True,
                                                                          tenant=tenant))
        assert not as_admin.payload_included and as_admin.payload == b"" and "withheld" in as_admin.payload_note
        with pytest.raises(ValidationError):  # an admin must say which tenant
            await cc.call("ListDeadLetters", pb.ListDeadLettersRequest())


async def test_payload_at_rest_is_encrypted(stack, control, provision, admin_pool):
    tenant, events = await _seed(stack, control, provision, n=2)
    await control.app.indexer.sync([tenant])
    rows = await admin_pool.fetch("SELECT payload_enc, key_enc, stack_enc, key_hash FROM vigil_dlq_entries "
                                  "WHERE tenant = $1", tenant)
    assert len(rows) == 2
    for row in rows:
        assert row["payload_enc"][:3] == b"VGE" and b"pat-" not in row["payload_enc"]
        assert b"DocumentReference" not in row["payload_enc"] and b"pat-" not in row["key_enc"]
        assert row["key_hash"] and "pat-" not in row["key_hash"]


async def test_dry_run_then_replay_exactly_once_with_lineage(stack, control, provision):
    tenant, events = await _seed(stack, control, provision)
    probe_ids = {e.id for e in events[:3]}
    async with control.client(control.token(tenant)) as cc:
        [dry] = await _replay(cc, pb.ReplayRequest(filter=pb.DeadLetterFilter(stage="probe"), dry_run=True))
        assert dry.dry_run and dry.done and dry.total == 3 and dry.to_send == 3 and dry.sent == 0
        assert [(t.topic, t.count) for t in dry.targets] == [(topic_name(tenant, "ehr-events"), 3)]
        assert {s.event_id for s in dry.sample} == probe_ids and {s.action for s in dry.sample} == {"send"}
        # dead-lettered events were never marked done in the stage's ledger: a replay will be processed
        ledger = Ledger(kv.admin_client(stack), tenant, "probe", 60)
        assert (await ledger.lookup(sorted(probe_ids), []))[0] == set()
        input_before = len(await count_records(stack, topic_name(tenant, "ehr-events")))
        assert input_before == 6  # dry run sent nothing

        # the stage is fixed: it now succeeds; replay and check every event is processed once
        async with StageHarness(stack, tenant, "probe", fail=lambda e: None) as stage:
            steps = await _replay(cc, pb.ReplayRequest(filter=pb.DeadLetterFilter(stage="probe"),
                                                       rate_per_second=200))
            assert steps[-1].done and steps[-1].sent == 3 and steps[-1].status == "done"
            assert [s.sent for s in steps[:-1]] == [1, 2, 3]

            async def all_processed() -> bool:
                return set(stage.processed) >= probe_ids
            await wait_for(all_processed, what="replayed events processed")
            again = await _replay(cc, pb.ReplayRequest(filter=pb.DeadLetterFilter(stage="probe")))
            assert again[-1].total == 0 and again[-1].sent == 0  # nothing waiting any more
        assert (await ledger.lookup(sorted(probe_ids), []))[0] == probe_ids  # done now, after the replay
        await ledger.redis.aclose()
        # exactly once each (the stage also sees the "other" half for the first time: not replays)
        assert sorted(i for i in stage.processed if i in probe_ids) == sorted(probe_ids)

        records = await count_records(stack, topic_name(tenant, "ehr-events"))
        replayed = [r for r in records if header_value(r.headers, "vigil-replay-job")]
        assert len(replayed) == 3
        assert {header_value(r.headers, "ce_id") for r in replayed} == probe_ids  # original event ids
        for r in replayed:
            assert header_value(r.headers, "vigil-replay-job") == steps[-1].job_id
            assert header_value(r.headers, "vigil-replay-count") == "1"
            assert int(header_value(r.headers, "vigil-replay-original-offset")) >= 0
        listed = await cc.call("ListDeadLetters", pb.ListDeadLettersRequest(filter=pb.DeadLetterFilter(status="any")))
        status = {i.event_id: (i.status, i.replay_count) for i in listed.items}
        assert all(status[i] == ("replayed", 1) for i in probe_ids)


async def test_loop_guard_stops_a_message_replayed_n_times(stack, control, provision):
    tenant = await provision()
    control.tenants.append(tenant)
    event = probe_event(tenant, 1)
    await dead_letter(stack, tenant, [event])
    async with control.client(control.token(tenant)) as cc, StageHarness(stack, tenant, "probe"):
        # the stage still fails: every replay dead-letters the event again (a new entry, same event id)
        for n in range(1, 3):
            steps = await _replay(cc, pb.ReplayRequest(filter=pb.DeadLetterFilter(stage="probe"), max_replays=2))
            assert steps[-1].sent == 1, n

            async def redead() -> bool:
                page = await cc.call("ListDeadLetters", pb.ListDeadLettersRequest())
                return page.total == 1 and page.items[0].replay_count == n
            await wait_for(redead, what=f"the event dead-lettered again after replay {n}")
        page = await cc.call("ListDeadLetters", pb.ListDeadLettersRequest())
        assert page.items[0].replayed_from_job  # lineage survived the second failure
        [dry] = await _replay(cc, pb.ReplayRequest(dry_run=True, max_replays=2))
        assert dry.total == 1 and dry.to_send == 0 and dry.skipped_loop_guard == 1
        assert dry.sample[0].action == "skip-loop-guard"
        held = await _replay(cc, pb.ReplayRequest(max_replays=2))
        assert held[-1].sent == 0 and held[-1].skipped_loop_guard == 1
        forced = await _replay(cc, pb.ReplayRequest(max_replays=2, force=True))
        assert forced[-1].sent == 1


async def test_replay_resumes_from_its_checkpoint(stack, control, provision):
    tenant = await provision()
    control.tenants.append(tenant)
    events = [probe_event(tenant, i) for i in range(8)]
    await dead_letter(stack, tenant, events)
    async with control.client(control.token(tenant)) as cc:
        got = []
        async for step in cc.stream("Replay", pb.ReplayRequest(rate_per_second=20)):
            got.append(step)
            if step.sent == 3:
                break  # the operator's connection drops mid-job
        job_id = got[-1].job_id

        async def interrupted() -> bool:
            async with control.app.pools.tx(tenant, readonly=True) as conn:
                return await conn.fetchval("SELECT status FROM vigil_dlq_replay_jobs WHERE tenant = $1 AND id = $2",
                                           tenant, job_id) == "interrupted"
        await wait_for(interrupted, what="the job marked interrupted")
        started = time.monotonic()
        resumed = await _replay(cc, pb.ReplayRequest(resume_job_id=job_id))
        # the job keeps its rate (20/s): the 5 remaining sends are spread over >= 4 / 20 s
        assert time.monotonic() - started >= 0.2
        assert resumed[-1].done and resumed[-1].sent == 8 and resumed[-1].checkpoint == 8
        assert resumed[0].checkpoint > 3  # started after the entries already sent
        with pytest.raises(NotFoundError):
            await _replay(cc, pb.ReplayRequest(resume_job_id="rj-nope"))
    records = await count_records(stack, topic_name(tenant, "ehr-events"))
    replayed = [header_value(r.headers, "ce_id") for r in records if header_value(r.headers, "vigil-replay-job")]
    assert sorted(replayed) == sorted(e.id for e in events)  # each exactly once across both runs


async def test_purge_under_retention_rules_and_stats(stack, control, provision, admin_pool):
    tenant, events = await _seed(stack, control, provision)
    async with control.client(control.token(tenant)) as cc:
        stats = await cc.call("Stats", pb.StatsRequest())
        by_stage = {s.stage: s for s in stats.stages}
        assert by_stage["probe"].depth == 3 and by_stage["other"].depth == 3
        assert by_stage["probe"].oldest_age_s >= 0 and len(by_stage["probe"].new_fingerprints) == 1
        assert metrics.INDEXED.labels(tenant=tenant, stage="probe")._value.get() == 3
        assert metrics.NEW_FINGERPRINTS.labels(tenant=tenant, stage="other")._value.get() == 1
        stop = asyncio.Event()  # the background loop refreshes the depth and age gauges
        loop_task = asyncio.create_task(control.app.indexer.run(stop))
        try:
            async def gauges() -> bool:
                return metrics.DEPTH.labels(tenant=tenant, stage="probe")._value.get() == 3 and \
                    metrics.OLDEST_AGE.labels(tenant=tenant, stage="probe")._value.get() > 0
            await wait_for(gauges, what="DLQ gauges")
        finally:
            stop.set()
            await loop_task

        with pytest.raises(ValidationError):
            await cc.call("Purge", pb.PurgeRequest())  # no retention rule
        young = await cc.call("Purge", pb.PurgeRequest(older_than_s=3600, status="any"))
        assert young.matched == 0  # everything is younger than an hour
        dry = await cc.call("Purge", pb.PurgeRequest(older_than_s=1, status="dead", stage="other", dry_run=True))
        assert dry.matched == 3 and dry.purged == 0
        done = await cc.call("Purge", pb.PurgeRequest(older_than_s=1, status="dead", stage="other"))
        assert done.purged == 3
        stats = await cc.call("Stats", pb.StatsRequest())
        assert {s.stage: s.depth for s in stats.stages} == {"probe": 3, "other": 0}
        rows = await admin_pool.fetch("SELECT payload_enc, stack_enc FROM vigil_dlq_entries WHERE tenant = $1 "
                                      "AND status = 'purged'", tenant)
        assert len(rows) == 3 and all(r["payload_enc"] is None and r["stack_enc"] is None for r in rows)
        await control.app.indexer.sync([tenant])  # re-reading the topic does not revive them
        page = await cc.call("ListDeadLetters", pb.ListDeadLettersRequest())
        assert page.total == 3

    async with control.client(control.admin_token()) as cc:
        every = await cc.call("Stats", pb.StatsRequest())
        assert {(s.tenant, s.stage) for s in every.stages} >= {(tenant, "probe"), (tenant, "other")}


async def test_modes_and_kill_switch(stack, control, provision):
    tenant = await provision()
    async with control.client(control.token(tenant)) as cc:
        state = await cc.call("GetMode", pb.GetModeRequest())
        assert state.mode == "silent" and not state.killed
        state = await cc.call("SetMode", pb.SetModeRequest(agent="writeback", mode="active", reason="go-live"))
        assert state.mode == "active" and state.source == "agent"
        state = await cc.call("Kill", pb.KillRequest(on=True, reason="incident"))
        assert state.killed
        state = await cc.call("GetMode", pb.GetModeRequest(agent="writeback"))
        assert state.killed and state.mode == "active"  # the tenant-wide switch covers every agent
        with pytest.raises(ValidationError):
            await cc.call("SetMode", pb.SetModeRequest(mode="loud"))
    assert await control.app.servicer.modes.is_killed(tenant, "triage")
