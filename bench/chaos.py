"""The chaos suite: the pipeline under load while stage processes are SIGKILLed and restarted,
the EHR is down for 30 s (fault-injection outage), Redis is restarted, the LLM endpoint answers
429/500, and 5% of the input events are poison; then the dead letters are replayed with
`vigil dlq replay`.

Two tenants: ``chaos-rules`` (rules engine) and ``chaos-llm`` (llm engine against the scripted
server of ``tests/fixtures/fake_llm.py``). Every note is a finding note for its own patient, so
each accepted note must end as exactly one Task for that patient. Asserted:

1. before the replay: every accepted note is written exactly once, or its event is in the DLQ
   (with a reason); every poison event is in the DLQ with a reason;
2. after the replay: every accepted note is written exactly once;
3. no duplicates anywhere: no patient has more than one Task, no note more than one decision.

Redis: a dedicated redis-server on its own port for this run (restarting the Redis the rest of
the machine uses is not ours to do). Exit status 0 when all assertions hold.

    python -m bench.chaos [--rate 1.5] [--seconds 90]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

from bench.chaos_faults import DedicatedRedis, ScriptedLlm, send_poison
from services.commands.demo import driver
from services.commands.demo.notes import FINDING_NOTES, ClinicDay, DemoPatient
from services.commands.demo.pipeline import Pipeline
from services.commands.demo.plan import SERVICES, DemoPlan
from services.commands.demo.tenants import DemoTenant, ehr_settings
from services.core.crypto import Keyring
from services.triage.ledger import DecisionLedger
from services.core.errors import RetryableError
from services.core.logging import configure
from services.core.secrets import SecretSettings
from services.core.tenantdb import TenantPools
from services.core.tokens import TokenSettings, issue
from services.ehr.provision import AdminClient

CHAOS_PORT_BASE = 18500
LLM_KEY_ENV = "VIGIL_CHAOS_LLM_KEY"
POISON_FRACTION = 0.05
OUTAGE_S = 30
SETTLE_TIMEOUT_S = 300.0
STABLE_FOR_S = 40.0
CONTROL = next(s for s in SERVICES if s.name == "control")


def tenants(llm_url: str) -> tuple[DemoTenant, ...]:
    return (DemoTenant("chaos-rules", "Chaos (rules)", "active", {"engine": "rules"}),
            DemoTenant("chaos-llm", "Chaos (llm)", "active",
                       {"engine": "llm", "llm_base_url": llm_url, "llm_model": "fake-model",
                        "llm_api_key_env": LLM_KEY_ENV, "llm_timeout_seconds": 10}))


class Chaos:
    def __init__(self, pipe: Pipeline, redis: DedicatedRedis, llm: ScriptedLlm):
        self.pipe, self.redis, self.llm = pipe, redis, llm
        self.events: list[str] = []
        self.started = time.monotonic()

    def note(self, what: str) -> None:
        line = f"t+{time.monotonic() - self.started:5.1f}s {what}"
        self.events.append(line)
        print(line, flush=True)

    async def kill_restart(self, name: str) -> None:
        self.pipe.supervisor.kill(name)
        self.note(f"SIGKILL {name}")
        self.pipe.supervisor.start(self.pipe.supervisor.running[name].service)
        await asyncio.to_thread(self.pipe.supervisor.wait_healthy, [name])
        self.note(f"{name} restarted and healthy")

    async def outage(self) -> None:
        async with AdminClient(self.pipe.plan.settings.ehr_url, ehr_settings(self.pipe.plan).admin_secret) as admin:
            for t in self.pipe.tenants:
                await admin.set_faults(t.id, outage_s=OUTAGE_S)
        self.note(f"EHR outage {OUTAGE_S}s for every tenant")

    async def restart_redis(self) -> None:
        await self.redis.restart(self.pipe.plan.settings, [t.id for t in self.pipe.tenants])
        self.note("Redis SIGKILLed and restarted (ACL users provisioned again)")

    async def llm_faults(self, seconds: float) -> None:
        self.llm.faulty = True
        self.note("LLM endpoint answers 429/500 to every other request")
        await asyncio.sleep(seconds)
        self.llm.faulty = False
        self.note(f"LLM endpoint healthy again ({self.llm.errors[429]} x 429, {self.llm.errors[500]} x 500 sent)")

    async def timeline(self, seconds: float) -> None:
        """Each fault at its own moment (fractions of the load), concurrently; the LLM endpoint
        fails every other request for the whole load (when notes reach the model depends on the
        backlog the other faults leave)."""
        self.started = time.monotonic()
        at = lambda frac: frac * seconds  # noqa: E731
        plan = [(at(0.08), lambda: self.kill_restart("extraction")), (at(0.12), self.outage),
                (at(0.25), lambda: self.kill_restart("triage")), (at(0.35), self.restart_redis),
                (at(0.02), lambda: self.llm_faults(at(0.98))), (at(0.6), lambda: self.kill_restart("writeback")),
                (at(0.75), lambda: self.kill_restart("extraction")), (at(0.85), lambda: self.kill_restart("ingest"))]

        async def later(when: float, action) -> None:
            await asyncio.sleep(max(0.0, self.started + when - time.monotonic()))
            await action()
        await asyncio.gather(*(later(when, action) for when, action in plan))


async def create_with_retry(coro_fn, attempts: int = 200):
    """The EHR may be in its outage: a clinician's note is saved once it is back (503 -> retry)."""
    for _ in range(attempts):
        try:
            return await coro_fn()
        except RetryableError:
            await asyncio.sleep(1.0)
    raise RuntimeError("the EHR did not come back")


async def load(pipe: Pipeline, chaos: Chaos, rate: float, seconds: float, tag: str) -> tuple[dict, dict]:
    """Notes at ``rate``/s per tenant with 5% poison events; returns accepted notes and poison keys."""
    n = int(rate * seconds)
    runs, notes, poison = {}, {t.id: [] for t in pipe.tenants}, {t.id: [] for t in pipe.tenants}
    for t in pipe.tenants:
        run = driver.TenantRun(t.id, pipe.client(t.id), pipe.practitioners[t.id])
        await run.client.start()
        day = ClinicDay([DemoPatient(f"c{i:04d}", "Chaos", "Pat", "pembrolizumab", "onc-1") for i in range(n)], [], [])
        await driver.create_patients(run, tag, day)
        runs[t.id] = run
    timeline = asyncio.create_task(chaos.timeline(seconds))
    poison_every = round(1 / POISON_FRACTION) - 1  # 1 poison per 19 notes = 5% of all events
    start = time.monotonic()
    for i in range(n):
        await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
        for t, run in runs.items():
            key = f"c{i:04d}"
            # a unique line per note: the inference cache answers repeated texts without the model
            text = FINDING_NOTES[i % len(FINDING_NOTES)][1].format(drug="pembrolizumab") + f" Visit {tag}-{i}."
            note = await create_with_retry(lambda: driver.send_note(run, tag, i, key, text, "finding",
                                                                    run.practitioners["onc-1"]))
            notes[t].append(note)
            if (i + 1) % poison_every == 0:
                poison[t] += await send_poison(pipe.plan.settings, t, 1)
    await timeline
    for run in runs.values():
        await run.client.close()
    return notes, poison


def control_client(pipe: Pipeline, tenant: str):
    from services.control.client import ControlClient
    from services.core.grpc.settings import GrpcSettings

    token = issue(TokenSettings.from_env(), sub="chaos", tenant=tenant, role="operator", ttl_seconds=600)
    return ControlClient(GrpcSettings.from_env(pipe.plan.service_env(CONTROL)), token)


async def dlq_items(control, tenant: str, patient_key: str, since: datetime, status: str = "dead") -> list:
    """Dead letters of one record key (the control service matches the key through its hash)."""
    from vigil.v1 import control_pb2 as pb

    reply = await control.call("ListDeadLetters", pb.ListDeadLettersRequest(
        filter=pb.DeadLetterFilter(tenant=tenant, patient_key=patient_key, status=status,
                                   since_ms=int(since.timestamp() * 1000)), page_size=100, tenant=tenant))
    return list(reply.items)


async def account(pipe: Pipeline, notes: dict, poison: dict, since: datetime) -> dict:
    """Per tenant: notes written once / in the DLQ / missing, duplicate Tasks and decisions, poison in DLQ."""
    pools = TenantPools(pipe.plan.settings, SecretSettings.from_env())
    ledger = DecisionLedger(pools, Keyring(pools, pools.secrets))
    out = {}
    try:
        for tenant, sent in notes.items():
            counts = {"accepted": len(sent), "written_once": 0, "in_dlq": 0, "missing": 0, "duplicate_tasks": 0,
                      "duplicate_decisions": 0, "poison": len(poison[tenant]), "poison_in_dlq": 0}
            decisions: dict[str, int] = {}
            for row in await ledger.since(tenant, since):
                decisions[row["document_id"]] = decisions.get(row["document_id"], 0) + 1
            async with pipe.client(tenant) as client, control_client(pipe, tenant) as control:
                for note in sent:
                    tasks = await client.search("Task", {"patient": f"Patient/{note.patient}"})
                    counts["duplicate_decisions"] += decisions.get(note.id, 0) > 1
                    if len(tasks) == 1:
                        counts["written_once"] += 1
                    elif len(tasks) > 1:
                        counts["duplicate_tasks"] += 1
                    elif [d for d in await dlq_items(control, tenant, note.patient, since) if d.error_code]:
                        counts["in_dlq"] += 1
                    else:
                        counts["missing"] += 1
                for key in poison[tenant]:
                    counts["poison_in_dlq"] += bool([d for d in await dlq_items(control, tenant, key, since, "any")
                                                     if d.error_code])
            out[tenant] = counts
    finally:
        await pools.close()
    return out


async def settle(pipe: Pipeline, notes: dict, poison: dict, since: datetime) -> dict:
    """Account until nothing changes for STABLE_FOR_S (or everything is accounted for)."""
    deadline, last, stable_since = time.monotonic() + SETTLE_TIMEOUT_S, None, time.monotonic()
    while True:
        counts = await account(pipe, notes, poison, since)
        done = all(c["missing"] == 0 and c["in_dlq"] == 0 for c in counts.values())
        if counts != last:
            last, stable_since = counts, time.monotonic()
        if done or time.monotonic() - stable_since > STABLE_FOR_S or time.monotonic() > deadline:
            return counts
        await asyncio.sleep(5)


def replay(pipe: Pipeline, tenant: str, since: datetime) -> str:
    env = {**pipe.plan.service_env(CONTROL),
           "VIGIL_OPERATOR_TOKEN": issue(TokenSettings.from_env(), sub="chaos", tenant=tenant, role="operator",
                                         ttl_seconds=600)}
    done = subprocess.run([sys.executable, "-m", "services.cli", "dlq", "replay", "--tenant", tenant,
                           "--since", since.isoformat(timespec="seconds"), "--json"], env=env,
                          capture_output=True, text=True, timeout=300)
    return (done.stdout.strip().splitlines() or [done.stderr.strip()])[-1][:300]


def report(title: str, counts: dict) -> None:
    cols = list(next(iter(counts.values())))
    print(f"\n{title}\n{'tenant':12s} " + " ".join(f"{c:>19s}" for c in cols))
    for tenant, c in counts.items():
        print(f"{tenant:12s} " + " ".join(f"{c[k]:>19d}" for k in cols))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1.5, help="notes per second per tenant")
    parser.add_argument("--seconds", type=float, default=90.0, help="duration of the load")
    args = parser.parse_args()
    configure("warning")
    os.environ.setdefault(LLM_KEY_ENV, "chaos-scripted-llm-key")
    base = DemoPlan.create("chaos", port_base=CHAOS_PORT_BASE)
    redis = DedicatedRedis(CHAOS_PORT_BASE + 50, base.folder / "redis")
    redis.start()
    llm = ScriptedLlm()
    plan = DemoPlan.create("chaos", port_base=CHAOS_PORT_BASE,
                           settings=base.settings.with_overrides(redis_url=redis.url))
    pipe = Pipeline(plan, tenants(llm.base_url), log=print, optional=False)
    failures: list[str] = []
    try:
        pipe.up()  # the control service comes up with the pipeline (it sets the tenants' modes)
        since = datetime.now(timezone.utc) - timedelta(seconds=2)
        chaos = Chaos(pipe, redis, llm)
        notes, poison = asyncio.run(load(pipe, chaos, args.rate, args.seconds, since.strftime("%H%M%S")))
        before = asyncio.run(settle(pipe, notes, poison, since))
        report("before the DLQ replay", before)
        for t in pipe.tenants:
            print(f"replay {t.id}: {replay(pipe, t.id, since)}")
        after = asyncio.run(settle(pipe, notes, poison, since))
        report("after the DLQ replay", after)
        for tenant, c in before.items():
            if c["missing"]:
                failures.append(f"{tenant}: {c['missing']} accepted notes neither written nor in the DLQ")
            if c["poison_in_dlq"] != c["poison"]:
                failures.append(f"{tenant}: {c['poison'] - c['poison_in_dlq']} poison events not in the DLQ")
        for tenant, c in after.items():
            if c["written_once"] != c["accepted"]:
                failures.append(f"{tenant}: after replay {c['accepted'] - c['written_once']} notes not written once")
            if c["duplicate_tasks"] or c["duplicate_decisions"]:
                failures.append(f"{tenant}: duplicates (Tasks {c['duplicate_tasks']}, "
                                f"decisions {c['duplicate_decisions']})")
        lost = sum(c["accepted"] - c["written_once"] for c in after.values())
        dups = sum(c["duplicate_tasks"] + c["duplicate_decisions"] for c in after.values())
        print(f"\nfaults: {len(chaos.events)} injected; lost events: {lost}; duplicated: {dups}")
        dead = pipe.supervisor.dead()
        if dead:
            failures.append(f"services down at the end: {dead}")
    finally:
        pipe.down()
        llm.stop()
        redis.kill()
    for failure in failures:
        print(f"FAIL {failure}")
    print("chaos: PASS" if not failures else "chaos: FAIL")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
