"""Benchmark: end-to-end latency, note created in the EHR -> Task readable in the EHR, on the
rules engine, at fixed note rates; and the raw baseline measured in the same run.

The whole pipeline runs as in `vigil demo` (every service its own process; the note reaches
ingest through the EHR's Subscription). Each note is a finding note for its own patient, so
each note yields exactly one new Task. A poller searches the EHR for new Tasks every
``POLL_S`` and records when each first became readable; latency = that moment minus the note's
``meta.lastUpdated``. A rate is *sustained* when every note's Task appeared within
``DRAIN_GRACE_S`` after the last note and latency did not climb through the step (p50 of the
last third <= ``CLIMB_FACTOR`` x p50 of the first third).

Baseline (same run, same rates, same EHR): the note create followed directly by a Task create
and a Task read, i.e. the EHR write + read path alone, with no pipeline in between.

    python -m bench.e2e [--rates 2,3,5,10] [--seconds 12] [--backfill N [--until-drained]]
Writes artifacts/bench/e2e.json and artifacts/bench/e2e.png.

``--backfill N`` also starts the batch lane (``Pipeline(batch_lane=True)``) and, before the rate
steps, a silent `vigil backfill run` of N realistic notes (``bench/crawl.py``'s NDJSON) for the
same tenant: the real-time figures are then measured while the batch lane works through its
backlog, and the result records how many batch notes were decided during the steps. With
``--until-drained``, real-time notes go on at the first rate, in windows of ``--seconds``, from the
backfill's start until the batch lane has decided every note of it; every real-time note's latency
counts (artifacts/bench/e2e-through-backfill.json).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

from services.commands.demo import driver
from services.commands.demo.notes import FINDING_NOTES, ClinicDay, DemoPatient
from services.commands.demo.pipeline import Pipeline
from services.commands.demo.plan import DemoPlan
from services.commands.demo.summary import percentile
from services.commands.demo.tenants import DemoTenant
from services.core.fhir import FhirClient
from services.core.logging import configure

BENCH_PORT_BASE = 18300
TENANT = DemoTenant("bench-e2e", "Benchmark Oncology", "active", {"engine": "rules"})
POLL_S = 0.1
DRAIN_GRACE_S = 30.0
CLIMB_FACTOR = 2.0
WARM_UP_NOTES = 3
OUT_DIR = Path("artifacts/bench")
INPUT_SYSTEM = "http://vigil.example/fhir/CodeSystem/task-input"


def _stats(values: list[float]) -> dict:
    return {"n": len(values), **{f"p{q}": percentile(values, q) for q in (50, 95, 99)},
            "max": max(values) if values else None}


def _source_note(task: dict) -> str | None:
    for item in task.get("input") or []:
        codes = [c.get("code") for c in (item.get("type") or {}).get("coding") or []]
        if "source-note" in codes and item.get("valueReference"):
            return item["valueReference"]["reference"].split("/")[1]
    return None


class TaskPoller:
    """Every POLL_S: Tasks changed since the start; note id -> first moment its Task was readable."""

    def __init__(self, client: FhirClient, since: str):
        self.client, self.since, self.seen = client, since, {}
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        while True:
            for task in await self.client.search("Task", {"_lastUpdated": f"ge{self.since}", "_count": "500"}):
                note = _source_note(task)
                if note and note not in self.seen:
                    self.seen[note] = datetime.now(timezone.utc)
            await asyncio.sleep(POLL_S)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def _patients(run: driver.TenantRun, tag: str, n: int) -> list[str]:
    day = ClinicDay([DemoPatient(f"b{i:04d}", "Bench", "Pat", "nivolumab", "onc-1") for i in range(n)], [], [])
    await driver.create_patients(run, tag, day)
    return list(run.patients)


async def pipeline_step(pipe: Pipeline, rate: float, seconds: float, tag: str) -> dict:
    """Notes at ``rate``/s for ``seconds``; latency to the Task being readable."""
    n = max(1, int(rate * seconds))
    async with pipe.client(TENANT.id) as client:
        run = driver.TenantRun(TENANT.id, client, pipe.practitioners[TENANT.id])
        keys = await _patients(run, tag, n)
        poller = TaskPoller(client, datetime.now(timezone.utc).isoformat(timespec="seconds"))
        poller.start()
        started = time.monotonic()
        sends = []
        for i, key in enumerate(keys):
            await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
            text = FINDING_NOTES[i % len(FINDING_NOTES)][1].format(drug="nivolumab")
            sends.append(asyncio.create_task(driver.send_note(run, tag, i, key, text, "finding",
                                                              run.practitioners["onc-1"])))
        notes = await asyncio.gather(*sends)
        send_s = time.monotonic() - started
        deadline = time.monotonic() + DRAIN_GRACE_S
        while len([x for x in notes if x.id in poller.seen]) < len(notes) and time.monotonic() < deadline:
            await asyncio.sleep(POLL_S)
        await poller.stop()
    latencies = [(poller.seen[x.id] - x.created).total_seconds() for x in notes if x.id in poller.seen]
    third = max(1, len(latencies) // 3)
    first, last = percentile(latencies[:third], 50), percentile(latencies[-third:], 50)
    complete = len(latencies) == len(notes)
    return {"rate": rate, "notes": len(notes), "tasks_seen": len(latencies), "send_seconds": round(send_s, 2),
            "latencies": [round(x, 4) for x in latencies],
            "achieved_rate": round(len(notes) / send_s, 2), "latency_s": _stats(latencies),
            "first_third_p50": first, "last_third_p50": last,
            "sustained": complete and last is not None and last <= CLIMB_FACTOR * max(first, 0.5)}


async def baseline_step(pipe: Pipeline, rate: float, seconds: float, tag: str) -> dict:
    """The EHR write + read path alone: note create, then Task create and read, at ``rate``/s."""
    n = max(1, int(rate * seconds))
    async with pipe.client(TENANT.id) as client:
        run = driver.TenantRun(TENANT.id, client, pipe.practitioners[TENANT.id])
        keys = await _patients(run, tag, n)

        async def one(i: int, key: str) -> float:
            note = await driver.send_note(run, tag, i, key, "Baseline note without findings.", None,
                                          run.practitioners["onc-1"])
            task = await client.create({
                "resourceType": "Task", "status": "requested", "intent": "order",
                "for": {"reference": f"Patient/{note.patient}"},
                "input": [{"type": {"coding": [{"system": INPUT_SYSTEM, "code": "source-note"}]},
                           "valueReference": {"reference": f"DocumentReference/{note.id}/_history/1"}}]})
            await client.read("Task", task.id)
            return (datetime.now(timezone.utc) - note.created).total_seconds()

        started = time.monotonic()
        jobs = []
        for i, key in enumerate(keys):
            await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
            jobs.append(asyncio.create_task(one(i, key)))
        latencies = list(await asyncio.gather(*jobs))
    return {"rate": rate, "notes": n, "latency_s": _stats(latencies)}


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, rows, style in (("pipeline", results["pipeline"], "-o"), ("EHR write+read baseline",
                                                                         results["baseline"], "--s")):
        rates = [r["rate"] for r in rows]
        for q in ("p50", "p95", "p99"):
            ax.plot(rates, [r["latency_s"][q] for r in rows], style, label=f"{name} {q}")
    ax.set_xlabel("notes per second")
    ax.set_ylabel("note created -> Task readable (s)")
    ax.set_yscale("log")
    ax.set_title("Vigil end-to-end latency (rules engine)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def table(results: dict) -> str:
    lines = ["rate/s  achieved  notes  tasks   p50 s   p95 s   p99 s  sustained   base p50  base p95  ratio p50"]
    for p, b in zip(results["pipeline"], results["baseline"]):
        lp, lb = p["latency_s"], b["latency_s"]
        ratio = lp["p50"] / lb["p50"] if lp["p50"] and lb["p50"] else None
        fmt = lambda v: f"{v:7.3f}" if v is not None else "      -"  # noqa: E731
        lines.append(f"{p['rate']:6g}  {p['achieved_rate']:8.2f}  {p['notes']:5d}  {p['tasks_seen']:5d} "
                     f"{fmt(lp['p50'])} {fmt(lp['p95'])} {fmt(lp['p99'])}  {str(p['sustained']):9s} "
                     f"{fmt(lb['p50'])}   {fmt(lb['p95'])}   {ratio and f'{ratio:8.1f}x' or '-'}")
    lines.append(f"maximum sustained rate: {results['max_sustained_rate']} notes/s")
    return "\n".join(lines)


async def batch_decided(pipe: Pipeline) -> int:
    """Batch notes whose findings triage-batch has committed so far (a stage commits per poll batch)."""
    from bench.crawl import committed

    return (await committed(pipe.plan.settings, TENANT.id, "triage-batch", "batch-findings"))[0]


async def batch_noted(pipe: Pipeline) -> int:
    """Batch notes with at least one decision in the ledger so far (read with the platform connection)."""
    from services.core.db import create_pool

    pool = await create_pool(pipe.plan.settings, min_size=1, max_size=1)
    try:
        return await pool.fetchval("SELECT count(DISTINCT findings_event_id) FROM vigil_decisions "
                                   "WHERE tenant = $1 AND run IS NOT NULL", TENANT.id)
    finally:
        await pool.close()


def start_backfill(pipe: Pipeline, n: int, tag: str):
    """`vigil backfill run` of ``n`` realistic notes in its own process (its progress in the log folder)."""
    import subprocess
    import sys

    from bench.crawl import write_notes
    from services.commands.demo.plan import SERVICES

    notes = OUT_DIR / "e2e-backfill.ndjson"
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    write_notes(notes, n, f"bf{tag}")
    env = pipe.plan.service_env(next(s for s in SERVICES if s.name == "ingest"))
    log = open(pipe.plan.logs_dir / "backfill.log", "ab")
    return subprocess.Popen([sys.executable, "-m", "tests.fixtures.batch_cli", "backfill", "run", "--tenant", TENANT.id,
                             "--source", "jsonl", str(notes), "--name", f"bench-{tag}", "--silent", "--quiet"],
                            env=env, stdout=log, stderr=subprocess.STDOUT)


async def measure(pipe: Pipeline, rates: list[float], seconds: float, backfill: int = 0) -> dict:
    tag = datetime.now(timezone.utc).strftime("%H%M%S")
    await pipeline_step(pipe, 1.0, WARM_UP_NOTES, f"{tag}-warm")
    results: dict = {"pipeline": [], "baseline": []}
    proc = None
    if backfill:
        proc = start_backfill(pipe, backfill, tag)
        while await batch_decided(pipe) < 20:  # the batch lane is busy before the first step
            await asyncio.sleep(0.5)
        results["backfill"] = {"notes": backfill, "decided_before_steps": await batch_decided(pipe),
                               "notes_with_decisions_before_steps": await batch_noted(pipe),
                               "batch_max_rate": os.environ.get("VIGIL_BATCH_MAX_RATE") or "none"}
    for rate in rates:
        results["baseline"].append(await baseline_step(pipe, rate, seconds, f"{tag}-base-{rate:g}"))
        step = await pipeline_step(pipe, rate, seconds, f"{tag}-e2e-{rate:g}")
        results["pipeline"].append(step)
        print(f"rate {rate:g}/s: p50 {step['latency_s']['p50']} s, p95 {step['latency_s']['p95']} s, "
              f"{step['tasks_seen']}/{step['notes']} Tasks, sustained {step['sustained']}", flush=True)
    if proc is not None:
        results["backfill"]["decided_after_steps"] = await batch_decided(pipe)
        results["backfill"]["notes_with_decisions_after_steps"] = await batch_noted(pipe)
        results["backfill"]["ingest_still_running"] = proc.poll() is None
        proc.terminate()
        proc.wait()
        bf = results["backfill"]
        print(f"batch lane during the steps: findings of {bf['decided_after_steps'] - bf['decided_before_steps']} "
              f"notes committed by triage-batch, {bf['notes_with_decisions_after_steps'] - bf['notes_with_decisions_before_steps']}"
              f" notes with decisions recorded (of a {backfill}-note backfill)", flush=True)
    sustained = [r["rate"] for r in results["pipeline"] if r["sustained"]]
    results["max_sustained_rate"] = max(sustained) if sustained else None
    return results


async def backfill_drained(pipe: Pipeline, n: int, start: dict[str, int], proc) -> bool:
    """The backfill process exited and the batch lane committed this run's ``n`` events and every
    findings event on its topics (``start``: the committed offsets before the run)."""
    from bench.crawl import committed

    if proc.poll() is None:
        return False
    settings = pipe.plan.settings
    events_done, events_end = await committed(settings, TENANT.id, "extraction-batch", "batch-events")
    findings_done, findings_end = await committed(settings, TENANT.id, "triage-batch", "batch-findings")
    return (events_done - start["events"] >= n and events_done >= events_end
            and findings_done - start["findings"] >= n and findings_done >= findings_end)


async def through_backfill(pipe: Pipeline, n: int, rate: float, seconds: float) -> dict:
    """Real-time notes at ``rate``/s in windows of ``seconds`` from the start of an ``n``-note
    backfill until the batch lane has decided all of it; every real-time note's latency counts."""
    from bench.crawl import committed

    tag = datetime.now(timezone.utc).strftime("%H%M%S")
    await pipeline_step(pipe, 1.0, WARM_UP_NOTES, f"{tag}-warm")
    settings = pipe.plan.settings
    start = {"events": (await committed(settings, TENANT.id, "extraction-batch", "batch-events"))[0],
             "findings": (await committed(settings, TENANT.id, "triage-batch", "batch-findings"))[0]}
    started = time.monotonic()
    proc = start_backfill(pipe, n, tag)
    windows, latencies = [], []
    try:
        while not await backfill_drained(pipe, n, start, proc):
            if proc.poll() not in (None, 0):
                raise RuntimeError(f"vigil backfill run exited {proc.returncode} (see its log)")
            step = await pipeline_step(pipe, rate, seconds, f"{tag}-w{len(windows)}")
            latencies += step.pop("latencies")
            decided = (await committed(settings, TENANT.id, "triage-batch", "batch-findings"))[0] - start["findings"]
            step.update(at_s=round(time.monotonic() - started, 1), batch_decided=decided)
            windows.append(step)
            print(f"{step['at_s']:7.1f} s: real time p50 {step['latency_s']['p50']:.3f} s, p99 "
                  f"{step['latency_s']['p99']:.3f} s, {step['tasks_seen']}/{step['notes']} Tasks; "
                  f"batch {decided}/{n} decided", flush=True)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait()
    wall = time.monotonic() - started
    overall = _stats(latencies)
    return {"backfill": {"notes": n, "drained_after_s": round(wall, 1), "notes_per_s": round(n / wall, 1),
                         "batch_max_rate": os.environ.get("VIGIL_BATCH_MAX_RATE") or "none"},
            "realtime": {"rate": rate, "window_s": seconds, "notes": sum(w["notes"] for w in windows),
                         "tasks_seen": len(latencies), "latency_s": overall,
                         "worst_window_p99": max((w["latency_s"]["p99"] or 0) for w in windows) if windows else None,
                         "all_windows_sustained": all(w["sustained"] for w in windows)},
            "windows": windows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="2,3,5,10", help="notes per second, comma-separated")
    parser.add_argument("--seconds", type=float, default=12.0, help="duration of each rate step")
    parser.add_argument("--backfill", type=int, default=0, help="notes of a batch run going on meanwhile")
    parser.add_argument("--until-drained", action="store_true",
                        help="with --backfill: real time at the first rate, in windows of --seconds, from the "
                             "backfill's start until the batch lane has decided all of it")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    if args.until_drained and not args.backfill:
        parser.error("--until-drained needs --backfill N")
    configure("warning")
    plan = DemoPlan.create("bench", port_base=BENCH_PORT_BASE)
    pipe = Pipeline(plan, (TENANT,), log=print, optional=False, batch_lane=args.backfill > 0)
    try:
        pipe.up()
        if args.until_drained:
            results = asyncio.run(through_backfill(pipe, args.backfill, rates[0], args.seconds))
        else:
            results = asyncio.run(measure(pipe, rates, args.seconds, args.backfill))
    finally:
        pipe.down()
    if args.until_drained:
        results.update(engine="rules", measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        (OUT_DIR / "e2e-through-backfill.json").write_text(json.dumps(results, indent=2, default=str))
        rt, bf = results["realtime"], results["backfill"]
        lat = rt["latency_s"]
        print(f"backfill of {bf['notes']} notes drained in {bf['drained_after_s']} s ({bf['notes_per_s']} notes/s); "
              f"real time at {rt['rate']:g}/s meanwhile: {rt['tasks_seen']}/{rt['notes']} Tasks, p50 {lat['p50']:.3f} s, "
              f"p95 {lat['p95']:.3f} s, p99 {lat['p99']:.3f} s, max {lat['max']:.3f} s; worst window p99 "
              f"{rt['worst_window_p99']:.3f} s")
        print(f"wrote {OUT_DIR / 'e2e-through-backfill.json'}")
        return
    results.update({"engine": "rules", "step_seconds": args.seconds, "services": [s.name for s in pipe.services()],
                    "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    name = "e2e-backfill" if args.backfill else "e2e"
    (OUT_DIR / f"{name}.json").write_text(json.dumps(results, indent=2, default=str))
    plot(results, OUT_DIR / f"{name}.png")
    print(table(results))
    print(f"wrote {OUT_DIR / f'{name}.json'} and {OUT_DIR / f'{name}.png'}")


if __name__ == "__main__":
    main()
