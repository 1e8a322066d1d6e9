"""Modes, pilot lists and kill switches are written by the control service only: `vigil mode` and
`vigil kill` call its gRPC API (the CLI in a process of its own, and in-process), it authorises and
audits every change, and the reader every stage has (``services.core.modes.ModeStore``) sees the
change within its one-second cache."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

from typer.testing import CliRunner

from services.cli import app as vigil_app
from services.core import audit
from services.core.errors import PermissionDeniedError, ValidationError
from services.core.modes import CACHE_TTL_S, ModeStore
from tests.fixtures.control import REPO, control_process, operator_token
from tests.fixtures.ports import free_port
from vigil.v1 import control_pb2 as pb


def _json(output: str) -> dict:
    return json.loads(next(line for line in reversed(output.splitlines()) if line.startswith("{")))


async def _mode_actions(pools, tenant: str) -> list[tuple[str, str, dict]]:
    async with pools.tx(tenant, readonly=True) as conn:
        records = await audit.tail(conn, tenant, 50)
    return [(r.actor, r.action, json.loads(r.details)) for r in sorted(records, key=lambda r: r.chain_seq)
            if r.action.startswith(("mode.set", "mode.pilot", "kill."))]


async def _denied_methods(admin_pool, tenant: str) -> set[str]:
    rows = await admin_pool.fetch("SELECT details FROM vigil_audit_log WHERE tenant = $1 AND action = 'control.denied' "
                                  "AND details LIKE $2", audit.PLATFORM, f'%"{tenant}"%')
    return {json.loads(r["details"])["method"].rsplit("/", 1)[-1] for r in rows}


async def test_vigil_mode_set_in_its_own_process_goes_through_control(stack, provision, pools, admin_pool, tmp_path):
    tenant, other = await provision(), await provision()
    registry = tmp_path / "tenants.toml"  # absent: every tenant defaults to silent

    async with control_process({"VIGIL_TENANTS_FILE": str(registry)}) as control:  # the monitor's gates wired in
        async def vigil(*args, token: str = operator_token(tenant), **env):
            return await asyncio.to_thread(
                subprocess.run, [sys.executable, "-m", "services.cli", *args], cwd=REPO, capture_output=True,
                text=True, timeout=180, env={**os.environ, "VIGIL_TENANTS_FILE": str(registry), **control.env(token),
                                             **env})

        refused = await vigil("mode", "set", "pilot", "--tenant", tenant, "--pilot", "Practitioner/p7")
        assert refused.returncode == 1, refused.stderr
        assert "monitor-gate: no gate decision for silent -> pilot" in refused.stderr
        forced = await vigil("mode", "set", "pilot", "--tenant", tenant, "--pilot", "Practitioner/p7", "--force",
                             "--reason", "pilot agreed", "--json")
        assert forced.returncode == 0, forced.stderr
        assert _json(forced.stdout) == {"tenant": tenant, "agent": "*", "mode": "pilot", "source": "tenant",
                                        "killed": False, "pilot_practitioners": ["Practitioner/p7"]}
        # unauthorised callers: another tenant's operator, a service credential, no credential at all
        cross = await vigil("mode", "set", "silent", "--tenant", tenant, token=operator_token(other))
        assert cross.returncode == 2 and "PermissionDeniedError" in cross.stderr, cross.stderr
        service = await vigil("kill", "--tenant", tenant, token=operator_token(tenant, role="service", sub="triage"))
        assert service.returncode == 2 and "PermissionDeniedError" in service.stderr, service.stderr
        anonymous = await vigil("kill", "--tenant", tenant, token="")
        assert anonymous.returncode == 2 and "operator token is required" in anonymous.stderr
    assert control.exit_code == 0
    # nothing running at the address: a clear error, exit 1
    gone = await vigil("mode", "get", "--tenant", tenant, VIGIL_GRPC_CONTROL_ADDR=f"127.0.0.1:{free_port()}")
    assert gone.returncode == 1 and "control service at 127.0.0.1:" in gone.stderr and "unreachable" in gone.stderr

    state = await ModeStore(pools, registry).state(tenant, "triage")  # what every stage reads
    assert (state.mode, state.source, state.killed, state.pilot_practitioners) == \
        ("pilot", "tenant", False, ("Practitioner/p7",))
    actions = await _mode_actions(pools, tenant)
    assert [(a, act) for a, act, _ in actions] == [("operator:ops-test", "mode.set")]
    assert actions[0][2]["forced"] is True and actions[0][2]["reason"] == "pilot agreed"
    assert await _denied_methods(admin_pool, tenant) >= {"SetMode", "Kill"}


async def test_mode_pilot_and_kill_commands_and_the_readers_cache(stack, control, provision, pools, admin_pool):
    tenant, other = await provision(), await provision()
    runner = CliRunner()

    async def vigil(*args, token: str | None = None):
        env = control.env(token or control.token(tenant))
        return await asyncio.to_thread(runner.invoke, vigil_app, list(args), env=env)

    got = await vigil("mode", "get", "--tenant", tenant, "--agent", "triage", "--json")
    assert got.exit_code == 0, got.output
    assert _json(got.stdout)["mode"] == "silent" and _json(got.stdout)["source"] == "registry"
    promoted = await vigil("mode", "set", "active", "--tenant", tenant, "--agent", "scheduling", "--json")
    assert promoted.exit_code == 0 and _json(promoted.stdout)["source"] == "agent"  # the fixture has no gate
    pilot = await vigil("mode", "pilot", "Practitioner/b", "Practitioner/a", "Practitioner/a", "--tenant", tenant,
                        "--json")
    assert pilot.exit_code == 0, pilot.output
    assert _json(pilot.stdout)["pilot_practitioners"] == ["Practitioner/a", "Practitioner/b"]
    assert _json(pilot.stdout)["mode"] == "silent"  # the list changed, not the mode
    for args, why in ((("mode", "pilot", "Patient/1", "--tenant", tenant), "not a Practitioner reference"),
                      (("mode", "set", "loud", "--tenant", tenant), "not one of"),
                      (("mode", "set", "active", "--tenant", tenant, "--force"), "--force needs --reason"),
                      (("kill", "--tenant", "Bad_Tenant"), "invalid tenant id")):
        bad = await vigil(*args)
        assert bad.exit_code == 2 and why in bad.output, (args, bad.output)

    reader = ModeStore(pools)  # a stage's reader, with its cache
    assert not await reader.is_killed(tenant, "triage")
    killed = await vigil("kill", "--tenant", tenant, "--agent", "triage", "--reason", "drill", "--json")
    assert killed.exit_code == 0 and _json(killed.stdout)["killed"] is True
    await asyncio.sleep(CACHE_TTL_S + 0.1)
    assert await reader.is_killed(tenant, "triage") and not await reader.is_killed(tenant, "scheduling")
    back = await vigil("kill", "--tenant", tenant, "--agent", "triage", "--off", "--json")
    assert _json(back.stdout)["killed"] is False
    assert [act for _, act, _ in await _mode_actions(pools, tenant)] == ["mode.set", "mode.pilot", "kill.on", "kill.off"]

    # over gRPC: SetPilot is held to the same rules as the other mode calls
    async with control.client(control.token(other)) as cc:
        for method, request in (("SetPilot", pb.SetPilotRequest(tenant=tenant, practitioners=["Practitioner/x"])),
                                ("SetMode", pb.SetModeRequest(tenant=tenant, mode="silent")),
                                ("Kill", pb.KillRequest(tenant=tenant, on=True))):
            try:
                await cc.call(method, request)
            except PermissionDeniedError:
                continue
            raise AssertionError(f"{method} naming another tenant was allowed")
        try:
            await cc.call("SetPilot", pb.SetPilotRequest(practitioners=["x" * 300]))
            raise AssertionError("a bad pilot entry was accepted")
        except ValidationError as exc:
            assert "x" * 100 not in str(exc)  # the message is bounded
    assert await _denied_methods(admin_pool, tenant) >= {"SetPilot", "SetMode", "Kill"}
    state = await ModeStore(pools).state(tenant, "triage", fresh=True)
    assert state.pilot_practitioners == ("Practitioner/a", "Practitioner/b") and not state.killed
