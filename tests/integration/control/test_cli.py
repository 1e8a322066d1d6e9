"""`vigil token issue` and `vigil dlq ...` against the control service on loopback: tokens minted
from the signing key work, tables and JSON, exit codes 0 / 1 / 2."""
from __future__ import annotations

import asyncio
import json

from typer.testing import CliRunner

from services.cli import app as vigil_app
from tests.fixtures.control import dead_letter, probe_event


def _json(output: str) -> dict:
    """The command's JSON document (the in-process server may log to the same captured stdout)."""
    return json.loads(next(line for line in reversed(output.splitlines()) if line.startswith("{")))


async def test_token_issue_and_dlq_commands(stack, control, provision):
    tenant = await provision()
    control.tenants.append(tenant)
    events = [probe_event(tenant, i) for i in range(2)]
    await dead_letter(stack, tenant, events)
    runner = CliRunner()
    base = control.env("")

    async def vigil(*args, token: str | None = None):
        env = {**base, "VIGIL_OPERATOR_TOKEN": token or ""}
        return await asyncio.to_thread(runner.invoke, vigil_app, list(args), env=env)

    issued = await vigil("token", "issue", "--tenant", tenant, "--role", "operator", "--sub", "oncall", "--ttl", "1h")
    assert issued.exit_code == 0, issued.output
    token = issued.stdout.strip().splitlines()[-1]
    minted = await vigil("token", "issue", "--role", "platform-admin", "--sub", "platform")
    admin = minted.stdout.strip().splitlines()[-1]
    assert (await vigil("token", "issue", "--role", "operator")).exit_code == 2       # no tenant
    assert (await vigil("token", "issue", "--tenant", tenant, "--ttl", "3d")).exit_code == 2

    table = await vigil("dlq", "ls", token=token)
    assert table.exit_code == 0 and "dead letters (2 of 2)" in table.stdout
    listed = _json((await vigil("dlq", "ls", "--json", token=token)).stdout)
    assert listed["total"] == 2
    target = listed["items"][0]
    shown = await vigil("dlq", "show", target["id"], "--payload", "--json", token=token)
    assert shown.exit_code == 0
    detail = _json(shown.stdout)
    assert json.loads(detail["payload"])["resourceType"] == "DocumentReference"
    assert detail["entry"]["event_id"] == target["event_id"]
    pretty = await vigil("dlq", "show", target["id"], token=token)
    assert pretty.exit_code == 0 and "Traceback" in pretty.stdout and "dlq-stack-fingerprint" in pretty.stdout

    assert (await vigil("dlq", "ls", "--stage", "nothing-here", token=token)).exit_code == 1
    assert (await vigil("dlq", "ls", "--since", "yesterday-ish", token=token)).exit_code == 2
    assert (await vigil("dlq", "purge", token=token)).exit_code == 2                    # no retention rule
    assert (await vigil("dlq", "ls")).exit_code == 2                                    # no token
    assert (await vigil("dlq", "ls", token=token[:-3] + "xyz")).exit_code == 2          # tampered token

    dry = await vigil("dlq", "replay", "--dry-run", token=token)
    assert dry.exit_code == 0 and "2 would be sent" in dry.stdout
    purge = await vigil("dlq", "purge", "--older-than", "1s", "--status", "dead", "--dry-run", "--json", token=token)
    assert purge.exit_code == 0 and _json(purge.stdout) == {"matched": "2", "purged": "0", "dry_run": True}
    await asyncio.sleep(1.1)
    gone = await vigil("dlq", "purge", "--id", target["id"], "--status", "dead", "--json", token=token)
    assert gone.exit_code == 0 and _json(gone.stdout)["purged"] == "1"
    stats = _json((await vigil("dlq", "stats", "--json", token=token)).stdout)
    assert [(s["stage"], s["depth"]) for s in stats["stages"]] == [("probe", "1")]

    assert (await vigil("dlq", "ls", token=admin)).exit_code == 2                       # admin must name a tenant
    as_admin = _json((await vigil("dlq", "ls", "--tenant", tenant, "--json", token=admin)).stdout)
    assert as_admin["total"] == 1
    withheld = _json((await vigil("dlq", "show", as_admin["items"][0]["id"], "--tenant", tenant, "--payload",
                                  "--json", token=admin)).stdout)
    assert withheld["payload"] is None and "withheld" in withheld["payload_note"]
    everywhere = await vigil("dlq", "stats", "--json", token=admin)
    assert everywhere.exit_code == 0 and tenant in {s["tenant"] for s in _json(everywhere.stdout)["stages"]}
