"""`vigil conversations show` as a real subprocess against the conversation in Redis."""
from __future__ import annotations

import asyncio
import json
import os
import sys


async def run_cli(sched, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "VIGIL_TENANTS_FILE": str(sched.path), "VIGIL_ENV": "test",
           "VIGIL_STATE_DIR": str(sched.stack.state_dir)}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "services.cli", "conversations", "show", *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                env=env)
    out, err = await proc.communicate()
    return proc.returncode, out.decode(), err.decode()


async def test_conversations_show(sched):
    patient = await sched.patient()
    await sched.open(patient)
    await sched.say(patient, "tomorrow at 3")
    await sched.say(patient, "yes")
    code, out, err = await run_cli(sched, "--tenant", sched.tenant, "--patient", patient, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["patient"] == patient and data["stage"] == "idle"
    assert data["appointment"]["start"] == "2030-03-05T15:00:00Z"
    assert data["history"].startswith("<5 messages")                   # PHI not printed by default
    assert "tomorrow at 3" not in out
    code, out, _ = await run_cli(sched, "--tenant", sched.tenant, "--patient", patient, "--json", "--reveal-messages")
    assert code == 0 and json.loads(out)["history"][1] == {"role": "user", "content": "tomorrow at 3"}
    async with sched.pools.tx(sched.tenant) as conn:
        actions = await conn.fetch("SELECT action FROM vigil_audit_log WHERE tenant = $1", sched.tenant)
    assert [r["action"] for r in actions] == ["conversation.history_read"]
    code, _, err = await run_cli(sched, "--tenant", sched.tenant, "--patient", "nobody")
    assert code == 1 and "no conversation" in err
    code, _, err = await run_cli(sched, "--tenant", "Bad Tenant!", "--patient", patient)
    assert code == 2 and "error" in err
