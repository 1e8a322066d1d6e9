"""No PHI readable from the broker without the tenant's key.

A note flows through the whole pipeline (EHR Subscription -> ingest -> extraction -> triage ->
writeback -> a Task); then every record of every topic of the tenant (streams, retry topics,
the dead-letter queue) is read raw from the real broker, as anyone who can reach it could, and
its value and headers are searched for the note's text and the evidence quotes (which the Task
in the EHR shows in clear). Only sealed quotes may be on the broker.
"""
from __future__ import annotations

import asyncio
import json

from services.core import evidence
from services.core.bus import ensure_stage_topics
from services.core.bus.service import StageHost
from services.core.crypto import Keyring
from services.core.events import decode
from services.core.tenancy import Tenant
from services.writeback import resources as R
from tests.e2e.test_note_to_task import FIRST, doc_ref, patient_with_oncologist, pipeline, tasks_of  # noqa: F401
from tests.fixtures.kafka import read_tenant_topics, wait_idle
from tests.fixtures.phi import note_snippets, scan_for_phi


def _strings(node) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in [k, *_strings(v)]]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return []


def record_text(record) -> str:
    """What a reader without keys sees: the value and headers as text, and the value's JSON strings
    unescaped (a note's line breaks are ``\\n`` inside JSON)."""
    value = record.value or b""
    parts = [value.decode("utf-8", "replace")]
    try:
        parts += _strings(json.loads(value))
    except ValueError:
        pass
    parts += [f"{name}: {(raw or b'').decode('utf-8', 'replace')}" for name, raw in record.headers or ()]
    parts.append((record.key or b"").decode("utf-8", "replace"))
    return "\n".join(parts)


async def test_no_note_text_or_quote_on_the_broker_after_a_note_becomes_a_task(pipeline, wb_tenant):  # noqa: F811
    wb, client = wb_tenant, pipeline.client
    patient, _ = await patient_with_oncologist(client)
    await ensure_stage_topics(wb.stack, Tenant(id=wb.tenant), pipeline.specs)
    host = StageHost(wb.settings, pipeline.specs, port=0, host="127.0.0.1", tenants=[wb.tenant])
    await host.start()
    stop = asyncio.Event()
    runner = asyncio.create_task(host.run(stop))
    try:
        await client.create(doc_ref(patient, FIRST))
        (task,) = await wb.wait(lambda: tasks_of(client, patient), timeout=60)
        await wait_idle(wb.stack, wb.tenant, pipeline.specs)
    finally:
        stop.set()
        await runner
        await host.stop()
    quotes = R.task_inputs(task, "evidence-quote")
    assert quotes and all(q in FIRST for q in quotes), "the Task carries the evidence in clear (in the EHR)"

    topics = await read_tenant_topics(wb.stack, wb.tenant)
    records = [(topic, r) for topic, found in topics.items() for r in found]
    by_stream = {topic.split(".", 2)[2]: len(found) for topic, found in topics.items() if found}
    assert {"ehr-events", "findings", "actions"} <= by_stream.keys(), by_stream
    markers = [(q, "quote") for q in quotes] + [(s, "note") for s in note_snippets(FIRST)]
    leaks = [(topic, h.kind, h.excerpt) for topic, r in records for h in scan_for_phi(record_text(r), markers)]
    assert not leaks, f"{len(leaks)} PHI hits on the broker: {leaks[:5]}"

    # the sealed quotes are there, and open with the tenant key to exactly the Task's evidence
    keyring = Keyring(wb.pools)
    findings = [decode(r.key, r.value, r.headers) for r in topics[f"vigil.{wb.tenant}.findings"]]
    opened = [f["quote"] for e in findings for f in (await evidence.open_event(keyring, e)).data["findings"]]
    assert set(quotes) <= set(opened)
    decisions = [decode(r.key, r.value, r.headers) for r in topics[f"vigil.{wb.tenant}.actions"]]
    decisions = [e for e in decisions if e.type == "vigil.triage.decision"]
    assert decisions and all("quoteSealed" in e.data["finding"] for e in decisions)
    print(f"\n{len(records)} records on {len(by_stream)} topics scanned: {by_stream}")
