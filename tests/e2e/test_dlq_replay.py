"""End to end: the EHR rejects writes for a while, writeback dead-letters its decisions, the EHR
recovers, `vigil dlq replay --tenant T --stage writeback --dry-run` shows the right count, and the
real replay writes each decision exactly once - including one whose write had in fact been
committed before the failure (its response was lost as a 500, then the EHR went down).

Real pieces: broker, PostgreSQL, Redis, the EHR sandbox (its fault-injection admin API), the
writeback stage, the control service over gRPC with a signed operator token, and the CLI."""
from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import httpx

from services.core.events import header_value
from services.core.fhir import FhirClient
from services.core.tenancy import topic_name
from services.writeback.config import WRITE_SCOPE
from services.writeback.deps import Deps
from tests.fixtures.control import count_records, wait_for
from tests.fixtures.kafka import wait_idle
from tests.fixtures.writeback import new_patient
from vigil.v1 import control_pb2 as pb

VIGIL = Path(sys.executable).with_name("vigil")


class CommitThenFail(httpx.AsyncBaseTransport):
    """Lets the EHR commit the first transaction of ``decision_id``, then answers 500 and turns on the
    sandbox's outage (through the admin API), as an EHR that fell over right after a commit."""

    def __init__(self, wb, decision_id: str):
        self.inner, self.wb, self.decision_id, self.tripped = httpx.AsyncHTTPTransport(), wb, decision_id, False

    async def handle_async_request(self, request):
        response = await self.inner.handle_async_request(request)
        if (not self.tripped and request.method == "POST" and request.url.path.rstrip("/").endswith(self.wb.tenant)
                and self.decision_id.encode() in request.content):
            await response.aread()
            assert response.status_code == 200, "the transaction itself must commit"
            self.tripped = True
            await self.wb.ehr.admin.set_faults(self.wb.tenant, error_rate=1.0, error_status=503, retry_after_s=0)
            return httpx.Response(500, json={"resourceType": "OperationOutcome", "issue": [
                {"severity": "error", "code": "exception", "diagnostics": "connection reset"}]}, request=request)
        return response

    async def aclose(self):
        await self.inner.aclose()


async def _patient(wb) -> tuple[str, dict]:
    pid = new_patient()
    await wb.ehr.client.update({"resourceType": "Patient", "id": pid, "name": [{"family": "Test", "given": ["Pat"]}]})
    return pid, await wb.note(pid)


async def test_writeback_dead_letters_are_replayed_exactly_once(wb_tenant, control, admin_pool):
    wb = wb_tenant
    control.tenants.append(wb.tenant)
    people = [await _patient(wb) for _ in range(4)]
    decisions = [wb.decision(pid, doc, episode=f"e2e-{i}") for i, (pid, doc) in enumerate(people)]
    committed_early = decisions[0]
    creds = await wb.ehr.admin.new_client(wb.tenant, "vigil-writeback-e2e", WRITE_SCOPE.split())
    transport = CommitThenFail(wb, committed_early.data["decisionId"])
    env = {**control.env(control.token(wb.tenant, sub="oncall")), "VIGIL_LOG_LEVEL": "warning"}

    async with FhirClient(wb.ehr.base_url, credentials=creds, transport=transport) as lossy:
        deps, original = Deps(wb.settings, wb_secrets_value(), pools=wb.pools, clients={wb.tenant: lossy}), wb.deps
        wb.deps = deps
        try:
            async with wb.host() as host:
                # 1. the first decision's transaction commits, its response is a 500, then the EHR is down
                await wb.publish("actions", [committed_early])
                # (the transport saw the EHR answer 200 to that transaction before it turned it into a 500)
                await wait_for(lambda: _async(transport.tripped), what="the committed-then-failed transaction")
                # 2. while the EHR rejects everything, three more decisions arrive
                await wb.publish("actions", decisions[1:])

                async def all_dead() -> bool:
                    page = await _list(control, wb.tenant)
                    return page.total == 4
                await wait_for(all_dead, timeout=60, what="four writeback dead letters")
                # 3. the EHR recovers; the operator checks, dry-runs, replays
                await wb.ehr.admin.clear_faults(wb.tenant)
                code, out, err = await _vigil(env, "dlq", "ls", "--tenant", wb.tenant, "--stage", "writeback",
                                              "--json")
                assert code == 0, err
                assert {i["event_id"] for i in json.loads(out)["items"]} == {d.id for d in decisions}
                code, out, err = await _vigil(env, "dlq", "replay", "--tenant", wb.tenant, "--stage", "writeback",
                                              "--dry-run", "--json")
                assert code == 0, err
                plan = json.loads(out.strip().splitlines()[-1])
                assert plan["total"] == "4" and plan["to_send"] == "4" and plan["dry_run"]
                assert [t["topic"] for t in plan["targets"]] == [topic_name(wb.tenant, "actions")]
                assert await _tasks(wb, people[1][0]) == 0  # a dry run writes nothing

                code, out, err = await _vigil(env, "dlq", "replay", "--tenant", wb.tenant, "--stage", "writeback",
                                              "--rate", "100")
                assert code == 0, err
                assert "4 sent" in out

                async def all_written() -> bool:
                    rows = [await wb.ledger.get(wb.tenant, d.data["decisionId"]) for d in decisions]
                    return all(r and r["written_refs"] for r in rows)
                await wait_for(all_written, timeout=60, what="every decision written")
                await wait_idle(wb.stack, wb.tenant, host.specs)  # any duplicate delivery handled before counting
        finally:
            wb.deps = original
            await deps.close()
    for pid, _ in people:
        assert await _tasks(wb, pid) == 1, "exactly one Task per decision, none duplicated"
    assert await wb.count("Provenance") == 4
    replayed = [r for r in await count_records(wb.stack, topic_name(wb.tenant, "actions"))
                if header_value(r.headers, "vigil-replay-job")]
    assert sorted(header_value(r.headers, "ce_id") for r in replayed) == sorted(d.id for d in decisions)
    written = [r for r in await count_records(wb.stack, topic_name(wb.tenant, "feedback"))
               if header_value(r.headers, "ce_type") == "vigil.writeback.task-written"]
    # the already-committed decision was found by its identifier ("none"): its fact is emitted by the
    # replay (the first attempt's answer was lost), so triage's ledger learns it; one per decision
    facts = {r.value: json.loads(r.value) for r in written}
    assert sorted(f["decisionId"] for f in facts.values()) == sorted(d.data["decisionId"] for d in decisions)
    assert {f["action"] for f in facts.values()} == {"created"}
    code, out, _ = await _vigil(env, "dlq", "replay", "--tenant", wb.tenant, "--stage", "writeback", "--dry-run",
                                "--json")
    assert code == 1 and json.loads(out.strip().splitlines()[-1])["total"] == "0"  # nothing left: exit 1
    code, out, _ = await _vigil(env, "dlq", "stats", "--tenant", wb.tenant, "--json")
    assert code == 0
    assert [(s["stage"], s["depth"], s["replayed"]) for s in json.loads(out)["stages"]] == [("writeback", "0", "4")]


def wb_secrets_value():
    from services.core.secrets import SecretSettings

    return SecretSettings.from_env({"VIGIL_ENV": "test"})


async def _async(value):
    return value


async def _list(control, tenant: str):
    async with control.client(control.token(tenant)) as cc:
        return await cc.call("ListDeadLetters",
                             pb.ListDeadLettersRequest(filter=pb.DeadLetterFilter(stage="writeback")))


async def _tasks(wb, pid: str) -> int:
    return await wb.count("Task", patient=pid)


async def _vigil(env: dict, *args: str) -> tuple[int, str, str]:
    """The real `vigil` command in its own process (its output is its own, not the test's logs)."""
    process = await asyncio.create_subprocess_exec(str(VIGIL), *args, env={**os.environ, **env},
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    return process.returncode, out.decode(), err.decode()
