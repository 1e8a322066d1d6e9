"""Cross-tenant attempts on the control plane through gRPC, the CLI and the web console: every one
denied (or shown nothing), every denial audited, the victim's dead letters untouched."""
from __future__ import annotations

import asyncio
import json

import httpx
from typer.testing import CliRunner

from services.cli import app as vigil_app
from services.core import audit
from services.core.errors import NotFoundError, PermissionDeniedError, UnauthenticatedError
from services.core.events import header_value
from services.core.tenancy import topic_name
from tests.fixtures.control import count_records, dead_letter, probe_event
from vigil.v1 import control_pb2 as pb


async def _two(stack, control, provision):
    a, b = await provision(), await provision()
    control.tenants += [a, b]
    await asyncio.gather(dead_letter(stack, a, [probe_event(a, 1)]),  # two tenants: independent stages
                         dead_letter(stack, b, [probe_event(b, 1), probe_event(b, 2)]))
    await control.app.indexer.sync()
    async with control.client(control.token(b)) as cc:
        b_ids = [i.id for i in (await cc.call("ListDeadLetters", pb.ListDeadLettersRequest())).items]
    assert len(b_ids) == 2
    return a, b, b_ids


async def _denials(admin_pool, victim: str) -> list[dict]:
    rows = await admin_pool.fetch("SELECT actor, details FROM vigil_audit_log WHERE tenant = $1 AND "
                                  "action = 'control.denied' AND details LIKE $2", audit.PLATFORM, f'%"{victim}"%')
    return [json.loads(r["details"]) for r in rows]


async def test_grpc_cross_tenant_attempts_are_denied_and_audited(stack, control, provision, admin_pool, adversary):
    a, b, b_ids = await _two(stack, control, provision)
    async with control.client(control.token(a)) as cc:
        attacks = [
            ("control.ListDeadLetters naming another tenant", "ListDeadLetters", pb.ListDeadLettersRequest(tenant=b)),
            ("control.ListDeadLetters with the other tenant in the filter", "ListDeadLetters",
             pb.ListDeadLettersRequest(filter=pb.DeadLetterFilter(tenant=b))),
            ("control.GetDeadLetter naming another tenant", "GetDeadLetter",
             pb.GetDeadLetterRequest(id=b_ids[0], tenant=b, include_payload=True)),
            ("control.Purge naming another tenant", "Purge", pb.PurgeRequest(tenant=b, older_than_s=1, status="any")),
            ("control.Stats naming another tenant", "Stats", pb.StatsRequest(tenant=b)),
            ("control.GetMode naming another tenant", "GetMode", pb.GetModeRequest(tenant=b)),
            ("control.SetMode naming another tenant", "SetMode", pb.SetModeRequest(tenant=b, mode="active")),
            ("control.Kill naming another tenant", "Kill", pb.KillRequest(tenant=b, on=True)),
        ]
        for name, method, request in attacks:
            with adversary.attempt(name, PermissionDeniedError):
                await cc.call(method, request)
        for name, request in (
                ("control.Replay naming another tenant", pb.ReplayRequest(tenant=b)),
                ("control.Replay with the other tenant in the filter",
                 pb.ReplayRequest(filter=pb.DeadLetterFilter(tenant=b, ids=b_ids))),
                ("control.Replay dry run naming another tenant", pb.ReplayRequest(tenant=b, dry_run=True))):
            with adversary.attempt(name, PermissionDeniedError):
                [s async for s in cc.stream("Replay", request)]
        # ids of the other tenant without naming it: row-level security shows nothing
        with adversary.attempt("control.GetDeadLetter of another tenant's id", NotFoundError):
            await cc.call("GetDeadLetter", pb.GetDeadLetterRequest(id=b_ids[0], include_payload=True))
        steps = [s async for s in cc.stream("Replay", pb.ReplayRequest(filter=pb.DeadLetterFilter(ids=b_ids)))]
        adversary.check("control.Replay of another tenant's ids", steps[-1].total == 0 and steps[-1].sent == 0,
                        "the job selected nothing")
        page = await cc.call("ListDeadLetters", pb.ListDeadLettersRequest(filter=pb.DeadLetterFilter(ids=b_ids)))
        adversary.check("control.ListDeadLetters of another tenant's ids", page.total == 0, "empty listing")
    async with control.client(control.token(a, role="service", sub="extraction")) as cc:
        with adversary.attempt("control with a service credential", PermissionDeniedError):
            await cc.call("ListDeadLetters", pb.ListDeadLettersRequest())
    async with control.client(control.token(a)[:-4] + "AAAA") as cc:
        with adversary.attempt("control with a tampered operator token", UnauthenticatedError):
            await cc.call("Stats", pb.StatsRequest())

    denials = await _denials(admin_pool, b)
    methods = {d["method"].rsplit("/", 1)[-1] for d in denials if d["caller_tenant"] == a}
    assert methods >= {"ListDeadLetters", "GetDeadLetter", "Replay", "Purge", "Stats", "GetMode", "SetMode", "Kill"}
    async with control.client(control.token(b)) as cc:
        page = await cc.call("ListDeadLetters", pb.ListDeadLettersRequest())
        assert page.total == 2 and {i.status for i in page.items} == {"dead"}
        assert not (await cc.call("GetMode", pb.GetModeRequest())).killed
    replays = [r for r in await count_records(stack, topic_name(b, "ehr-events"))
               if header_value(r.headers, "vigil-replay-job")]
    assert replays == []


async def test_cli_cross_tenant_attempts_exit_2_and_are_audited(stack, control, provision, admin_pool, adversary):
    a, b, b_ids = await _two(stack, control, provision)
    runner = CliRunner()
    env = control.env(control.token(a))

    async def vigil(*args):
        return await asyncio.to_thread(runner.invoke, vigil_app, list(args), env=env)

    ok = await vigil("dlq", "ls", "--json")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["total"] == 1
    for name, args in (("cli: vigil dlq ls --tenant <other>", ("dlq", "ls", "--tenant", b)),
                       ("cli: vigil dlq show --tenant <other>", ("dlq", "show", b_ids[0], "--tenant", b, "--payload")),
                       ("cli: vigil dlq replay --tenant <other>", ("dlq", "replay", "--tenant", b)),
                       ("cli: vigil dlq replay --dry-run --tenant <other>", ("dlq", "replay", "--tenant", b,
                                                                             "--dry-run")),
                       ("cli: vigil dlq purge --tenant <other>", ("dlq", "purge", "--tenant", b, "--older-than", "1s")),
                       ("cli: vigil dlq stats --tenant <other>", ("dlq", "stats", "--tenant", b))):
        result = await vigil(*args)
        adversary.check(name, result.exit_code == 2 and "PermissionDeniedError" in result.output,
                        f"exit {result.exit_code}")
    shown = await vigil("dlq", "show", b_ids[0], "--payload")
    adversary.check("cli: vigil dlq show <other tenant's id>", shown.exit_code == 1 and "NotFound" in shown.output,
                    f"exit {shown.exit_code}")
    no_token = await asyncio.to_thread(runner.invoke, vigil_app, ["dlq", "ls"], env={**env, "VIGIL_OPERATOR_TOKEN": ""})
    assert no_token.exit_code == 2
    denials = await _denials(admin_pool, b)
    assert {d["method"].rsplit("/", 1)[-1] for d in denials if d["caller_tenant"] == a} >= \
        {"ListDeadLetters", "GetDeadLetter", "Replay", "Purge", "Stats"}


async def test_console_cross_tenant_attempts_are_403_and_audited(stack, control, console, provision, admin_pool,
                                                                 adversary):
    a, b, b_ids = await _two(stack, control, provision)
    async with httpx.AsyncClient(base_url=console, follow_redirects=False, timeout=30) as web:
        refused = await web.post("/login", data={"token": "not-a-token"})
        assert refused.status_code == 401
        login = await web.post("/login", data={"token": control.token(a)})
        assert login.status_code == 303 and login.headers["location"] == f"/t/{a}/dlq"
        own = await web.get(f"/t/{a}/dlq")
        assert own.status_code == 200 and "(1 of 1)" in own.text
        csrf = own.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        for name, response in (
                ("console: DLQ list of another tenant", await web.get(f"/t/{b}/dlq")),
                ("console: dead letter of another tenant", await web.get(f"/t/{b}/dlq/{b_ids[0]}?payload=1")),
                ("console: replay for another tenant", await web.post(f"/t/{b}/replay", data={
                    "csrf": csrf, "action": "replay", "id": b_ids}))):
            adversary.check(name, response.status_code == 403, f"HTTP {response.status_code}")
        hidden = await web.get(f"/t/{a}/dlq/{b_ids[0]}?payload=1")
        adversary.check("console: another tenant's id under one's own tenant", hidden.status_code == 404,
                        f"HTTP {hidden.status_code}")
        forged = await web.post(f"/t/{a}/replay", data={"csrf": "x", "action": "dry-run"})
        assert forged.status_code == 403  # CSRF
    async with httpx.AsyncClient(base_url=console, timeout=30) as anonymous:
        assert (await anonymous.get(f"/t/{b}/dlq", follow_redirects=False)).status_code == 303
    denials = await _denials(admin_pool, b)
    assert {d["method"].rsplit("/", 1)[-1] for d in denials if d["caller_tenant"] == a} >= \
        {"ListDeadLetters", "GetDeadLetter", "Replay"}
