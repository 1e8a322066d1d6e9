"""Benchmark and acceptance check: the same N notes as an OMOP NOTE CSV and as FHIR Bulk Data NDJSON
give the same decisions, and a backfill killed midway resumes with no duplicate and no gap.

The notes are ``tests.fixtures.batch_notes`` (the realistic notes of ``tests/data/realistic``,
about 3 KB median, each made unique; 20 notes per patient): the same ``count`` and ``seed`` are
written as ``note.csv`` + ``persons.csv`` (OMOP NOTE table and its person -> MRN mapping) and as
``Patient.ndjson`` / ``DocumentReference.ndjson`` / ``Binary.ndjson`` (texts inline as attachment
data, every fifth in a Binary). Two fresh tenants, one per format, each run
``vigil backfill run --source omop|bulk-ndjson ... --silent`` as its own process (the CLI, as an
operator runs it) while the batch lane runs (``extraction --lane batch``, ``triage --lane batch``,
their own tools and inference servers: ``Pipeline(batch_lane=True)``, every service its own
process). The OMOP run is SIGKILLed once its checkpoint has passed N/2 notes (polled from the
run's row, not a sleep) and the same command is run again to resume it.

A run is finished when its process exited 0, extraction-batch has committed every batch event and
triage-batch every findings event (extraction emits one findings event per note; triage records a
note's decisions in the ledger before it commits the note's findings event). Then, per tenant:

- the document store holds exactly the N note ids, each once, version 1 (no gap, no second copy);
- the run's row says done with seen = stored + skipped = N;
- no (note, version, decision) is in the ledger twice (decision ids are tenant-specific, so the
  comparison is on what was decided: kind, category, grade, the evidence span and its grade,
  confidence, follow-up days, review flag, note time, note text hash, version, engine version);
- per source note id, the set of decisions of the OMOP tenant equals that of the NDJSON tenant.

    python -m bench.crawl_formats [--notes N] [--chunk C] [--renice]   (make bench-crawl-formats; N=10000)

Prints a table and writes artifacts/bench/crawl_formats.json; exits 1 on any difference,
duplicate or gap. ``--renice``: the batch lane and the backfill run at normal priority (on a host
shared with other work their nice 19 leaves them next to no CPU).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from bench.crawl import committed_with, renice
from services.ingest.batch import job as batch_job
from tests.fixtures import batch_notes

REPO = Path(__file__).resolve().parents[1]
DEFAULT_N = 10_000
DEFAULT_CHUNK = 200
BENCH_PORT_BASE = 18600
OUT_DIR = Path("artifacts/bench")
FORMATS = ("omop", "bulk-ndjson")
POLL_S = 0.5
#: Give up when the lane finished no note for this long (a stuck lane, not a slow one; above the
#: retry topics' 5 + 30 + 300 s, which the events of a chunk rolled back by the kill may go through).
STALL_S = 600.0
#: Seconds per note on top of STALL_S before a run is declared stuck whatever its progress.
TIMEOUT_PER_NOTE_S = 1.0
#: Chunks before the kill point from which the backfill is paused for each look at its progress.
STEP_CHUNKS = 10
BROKER_TIMEOUT_S = 60.0
#: The backfill's run slice while it is stepped to the kill point.
SLICE_S = 0.004


class CheckError(RuntimeError):
    """The check could not be carried out (a run failed, the lane stalled); PHI-free message."""


@dataclass
class Inputs:
    """The same notes in both formats: ``source`` and ``options`` per format, as the CLI takes them."""
    n: int
    note_ids: list[str]
    source: dict[str, Path]
    options: dict[str, list[str]]
    median_chars: int


def write_inputs(directory: Path, n: int, seed: int = 24) -> Inputs:
    """Write N notes as an OMOP NOTE CSV (+ person mapping) and as Bulk NDJSON (Patient +
    DocumentReference, texts as attachment data or Binary)."""
    directory.mkdir(parents=True, exist_ok=True)
    note_csv, persons = directory / "note.csv", directory / "persons.csv"
    batch_notes.write_omop_csv(note_csv, n, seed, mapping=persons)
    ndjson = directory / "bulk"
    for old in ndjson.glob("*.ndjson") if ndjson.exists() else ():
        old.unlink()
    batch_notes.write_bulk_ndjson(ndjson, n, seed)
    ids, sizes = [], []
    for note in batch_notes.notes(n, seed):
        ids.append(note.note_id)
        sizes.append(len(note.text.encode()))
    sizes.sort()
    return Inputs(n, ids, {"omop": note_csv, "bulk-ndjson": ndjson},
                  {"omop": ["--option", f"mapping={persons}"], "bulk-ndjson": []}, sizes[len(sizes) // 2])


@dataclass
class RunResult:
    format: str
    tenant: str
    name: str
    killed_at_seen: int | None = None
    starts: int = 0
    wall_s: float = 0.0
    row: dict = field(default_factory=dict)


def backfill_command(inputs: Inputs, fmt: str, tenant: str, name: str, chunk: int) -> list[str]:
    return [sys.executable, "-m", "services.cli", "backfill", "run", "--tenant", tenant, "--source", fmt,
            str(inputs.source[fmt]), *inputs.options[fmt], "--name", name, "--silent", "--chunk", str(chunk),
            "--quiet"]


async def _start(command: list[str], env: dict) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(*command, cwd=str(REPO), env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)


async def _finish(proc: asyncio.subprocess.Process, what: str, timeout: float,
                  tick: Callable[[int | None], None] | None = None) -> str:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    done = asyncio.ensure_future(proc.communicate())
    while not done.done():
        if tick is not None:
            tick(None)
        if loop.time() > deadline:
            proc.kill()
            await done
            raise CheckError(f"{what}: did not finish within {timeout:.0f} s")
        await asyncio.wait({done}, timeout=POLL_S)
    out, err = done.result()
    if proc.returncode != 0:
        raise CheckError(f"{what}: exited {proc.returncode}: {err.decode(errors='replace')[-600:]}")
    return out.decode(errors="replace")


def _signal(proc: asyncio.subprocess.Process, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it exited meanwhile: the caller reads its row
        proc.send_signal(sig)


async def _seen(pools, tenant: str, name: str) -> int | None:
    async with pools.tx(tenant, readonly=True) as conn:
        return await conn.fetchval("SELECT seen FROM ingest_batch_jobs WHERE tenant = $1 AND name = $2", tenant, name)


async def kill_midway(proc: asyncio.subprocess.Process, pools, tenant: str, name: str, at: int, chunk: int,
                      timeout: float, tick: Callable[[int | None], None] | None = None) -> int:
    """SIGKILL the backfill once its checkpoint has passed ``at`` notes; returns the seen count then.

    Far from ``at`` the run's row is polled while the process runs. From ``at - STEP_CHUNKS * chunk``
    on (a short run: from its start) the process is held stopped (SIGSTOP) and let run in slices of
    a few milliseconds (SIGCONT, sleep, SIGSTOP), its row read between slices and the process
    killed while stopped. Once its row exists, a stepped run has the lowest CPU priority: when this
    loop gets little processor (a loaded host), a slice lasts longer than asked, and the run must
    not use it to get to its end. It may be killed inside an open chunk (whose transaction then
    dies with it, as in any crash)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    stepping = at <= STEP_CHUNKS * chunk
    niced = False
    if stepping:
        _signal(proc, signal.SIGSTOP)
    try:
        while True:
            if tick is not None:
                tick(None)
            if proc.returncode is not None:
                _, err = await proc.communicate()
                raise CheckError(f"{name}: the backfill exited ({proc.returncode}) before {at} notes were "
                                 f"checkpointed: {err.decode(errors='replace')[-600:]}")
            seen = await _seen(pools, tenant, name)
            if seen is not None and seen >= at:
                _signal(proc, signal.SIGKILL)
                await proc.communicate()
                after = await batch_job.get(pools, tenant, name)
                if after.state == "done":
                    raise CheckError(f"{name}: the run finished before it could be killed (use more notes)")
                return after.seen
            if loop.time() > deadline:
                raise CheckError(f"{name}: fewer than {at} notes checkpointed within {timeout:.0f} s")
            if not stepping:
                if seen is not None and seen >= at - STEP_CHUNKS * chunk:
                    stepping = True
                    _signal(proc, signal.SIGSTOP)
                else:
                    await asyncio.sleep(0.1)
                continue
            if seen is not None and not niced:  # its start-up (before the run's row exists) at full speed
                niced = _lowest_priority(proc.pid) or True
            # a slice: blocking on purpose (the event loop must not delay the SIGSTOP)
            _signal(proc, signal.SIGCONT)
            time.sleep(SLICE_S)
            _signal(proc, signal.SIGSTOP)
    except BaseException:
        if proc.returncode is None:
            _signal(proc, signal.SIGKILL)
            await proc.wait()
        raise


def _lowest_priority(pid: int) -> None:
    """Nice 19 for every thread of the process (Linux sets a nice value per thread; threads it
    starts later inherit it from the thread that starts them)."""
    tasks = Path(f"/proc/{pid}/task")
    for tid in ([int(t.name) for t in tasks.iterdir()] if tasks.exists() else [pid]):
        with contextlib.suppress(OSError):  # gone meanwhile, or not Linux
            os.setpriority(os.PRIO_PROCESS, tid, 19)


class Lane:
    """Polls the batch lane's committed offsets of a tenant with one consumer and admin client."""

    def __init__(self, settings):
        self.settings = settings

    async def __aenter__(self):
        from aiokafka import AIOKafkaConsumer
        from aiokafka.admin import AIOKafkaAdminClient

        kwargs = self.settings.kafka.client_kwargs()
        self.consumer, self.admin = AIOKafkaConsumer(enable_auto_commit=False, **kwargs), AIOKafkaAdminClient(**kwargs)
        await self.consumer.start()
        await self.admin.start()
        return self

    async def __aexit__(self, *exc):
        await self.admin.close()
        await self.consumer.stop()

    async def progress(self, tenant: str) -> tuple[int, int, int, int]:
        """(batch events committed by extraction-batch, their end offsets, findings events committed by
        triage-batch, their end offsets)."""
        try:
            events = await asyncio.wait_for(
                committed_with(self.consumer, self.admin, tenant, "extraction-batch", "batch-events"), BROKER_TIMEOUT_S)
            findings = await asyncio.wait_for(
                committed_with(self.consumer, self.admin, tenant, "triage-batch", "batch-findings"), BROKER_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise CheckError(f"{tenant}: the broker did not answer for the lane's offsets within "
                             f"{BROKER_TIMEOUT_S:.0f} s") from None
        return (*events, *findings)


async def wait_decided(lane: Lane, pools, tenant: str, run: str, n: int, *, stall_s: float = STALL_S,
                       timeout: float | None = None, tick: Callable[[int | None], None] | None = None) -> int:
    """Until extraction-batch committed at least n batch events (all there are) and triage-batch n
    findings events (all there are): every stored note has its decisions in the ledger. Returns the
    number of decisions of the run. Raises CheckError when nothing moves for ``stall_s`` or
    ``timeout`` passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + (timeout if timeout is not None else stall_s + n * TIMEOUT_PER_NOTE_S)
    last, last_change = None, loop.time()
    while True:
        if tick is not None:
            tick(None)
        events_done, events_end, findings_done, findings_end = await lane.progress(tenant)
        # the dev broker can report end offsets below committed ones: count on what was committed too
        if events_done >= max(n, events_end) and findings_done >= max(n, findings_end):
            return await decision_count(pools, tenant, run)
        state = (events_done, findings_done)
        if state != last:
            last, last_change = state, loop.time()
        elif loop.time() - last_change > stall_s:
            raise CheckError(f"{tenant}/{run}: the batch lane made no progress for {stall_s:.0f} s "
                             f"({events_done}/{n} notes extracted, {findings_done}/{n} triaged)")
        if loop.time() > deadline:
            raise CheckError(f"{tenant}/{run}: not every note decided in time ({events_done}/{n} notes extracted, "
                             f"{findings_done}/{n} triaged)")
        await asyncio.sleep(POLL_S)


async def decision_count(pools, tenant: str, run: str) -> int:
    async with pools.tx(tenant, readonly=True) as conn:
        return await conn.fetchval("SELECT count(*) FROM vigil_decisions WHERE run = $1", run)


async def crawl(inputs: Inputs, fmt: str, tenant: str, name: str, *, env: dict, pools, lane: Lane,
                kill_at: int | None = None, chunk: int = DEFAULT_CHUNK, run_timeout: float | None = None,
                stall_s: float = STALL_S, tick: Callable[[int | None], None] | None = None) -> RunResult:
    """One format through `vigil backfill run` (killed once at ``kill_at`` checkpointed notes and
    resumed, when given) until every note is decided. ``tick(pid)`` is called when a backfill
    process starts and ``tick(None)`` every poll while the run goes on."""
    result = RunResult(fmt, tenant, name)
    command = backfill_command(inputs, fmt, tenant, name, chunk)
    timeout = run_timeout if run_timeout is not None else 600 + inputs.n * TIMEOUT_PER_NOTE_S
    started = time.perf_counter()
    proc = await _start(command, env)
    result.starts = 1
    if tick is not None:
        tick(proc.pid)
    if kill_at is not None:
        result.killed_at_seen = await kill_midway(proc, pools, tenant, name, kill_at, chunk, timeout, tick)
        proc = await _start(command, env)  # the same command resumes
        result.starts = 2
        if tick is not None:
            tick(proc.pid)
    await _finish(proc, f"{fmt} backfill {name}", timeout, tick)
    await wait_decided(lane, pools, tenant, name, inputs.n, stall_s=stall_s, timeout=run_timeout, tick=tick)
    result.wall_s = time.perf_counter() - started
    row = await batch_job.get(pools, tenant, name)
    result.row = {k: getattr(row, k) for k in ("state", "seen", "stored", "published", "skipped", "no_text")}
    return result


def decision_key(row: dict) -> tuple:
    """What was decided about a note, independent of the tenant (ids, patients and episodes differ)."""
    out = row["output"] or {}
    finding = out.get("finding") or {}
    return (row["kind"], row["category"], row["grade"], finding.get("category"), finding.get("grade"),
            finding.get("start"), finding.get("end"), out.get("confidence"), out.get("withinDays"),
            out.get("reviewRequired"), out.get("noteTime"), row["note_sha256"], row["document_version"],
            row["engine_version"], row["suppressed"])


async def ledger_by_note(pools, tenant: str, run: str) -> tuple[dict[str, Counter], int]:
    """{source note id: Counter of decision keys} of a run, and the number of its decisions."""
    async with pools.tx(tenant, readonly=True) as conn:
        rows = await conn.fetch("SELECT kind, category, grade, output, note_sha256, document_version, engine_version, "
                                "suppressed FROM vigil_decisions WHERE run = $1", run)
    by_note: dict[str, Counter] = {}
    for r in rows:
        row = dict(r)
        row["output"] = json.loads(row["output"]) if isinstance(row["output"], str) else row["output"]
        note = ((row["output"].get("document") or {}).get("identifier") or {}).get("value") or "?"
        by_note.setdefault(note, Counter())[decision_key(row)] += 1
    return by_note, len(rows)


async def stored_notes(pools, tenant: str) -> dict[str, list[int]]:
    """{source note id: its stored versions}."""
    async with pools.tx(tenant, readonly=True) as conn:
        rows = await conn.fetch("SELECT identifier_value, version FROM ingest_documents WHERE tenant = $1", tenant)
    out: dict[str, list[int]] = {}
    for r in rows:
        out.setdefault(r["identifier_value"], []).append(r["version"])
    return out


async def check(inputs: Inputs, runs: list[RunResult], pools) -> dict:
    """Differences between the formats, duplicates and gaps (each must be 0)."""
    expected = set(inputs.note_ids)
    per_format, ledgers = {}, {}
    for run in runs:
        stored = await stored_notes(pools, run.tenant)
        ledger, decisions = await ledger_by_note(pools, run.tenant, run.name)
        ledgers[run.format] = ledger
        row = run.row
        status_ok = (row.get("state") == "done" and row.get("seen") == inputs.n
                     and row.get("stored", 0) + row.get("skipped", 0) == inputs.n)
        per_format[run.format] = {
            "tenant": run.tenant, "run": run.name, "decisions": decisions, "notes_with_decisions": len(ledger),
            "stored_documents": sum(len(v) for v in stored.values()),
            "gaps": len(expected - set(stored)) + (0 if status_ok else 1),
            "unexpected_documents": len(set(stored) - expected),
            "duplicates": (sum(len(v) - 1 for v in stored.values()) + sum(1 for v in stored.values() if max(v) > 1)
                           + sum(c - 1 for keys in ledger.values() for c in keys.values() if c > 1)),
            "status": row, "status_ok": status_ok, "killed_at_seen": run.killed_at_seen, "starts": run.starts,
            "wall_s": round(run.wall_s, 2), "notes_per_s": round(inputs.n / run.wall_s, 2) if run.wall_s else None}
    a, b = (ledgers[f] for f in FORMATS)
    differing = sorted(note for note in set(a) | set(b) if set(a.get(note, ())) != set(b.get(note, ())))
    return {"notes": inputs.n, "median_note_bytes": inputs.median_chars, "formats": per_format,
            "differences": len(differing), "differing_notes": differing[:20],
            "duplicates": sum(f["duplicates"] for f in per_format.values()),
            "gaps": sum(f["gaps"] + f["unexpected_documents"] for f in per_format.values())}


def failed(report: dict) -> bool:
    return bool(report["differences"] or report["duplicates"] or report["gaps"])


def table(report: dict) -> str:
    lines = [f"{report['notes']} notes (median {report['median_note_bytes']} bytes), OMOP CSV vs Bulk NDJSON",
             f"{'format':12s} {'decisions':>9s} {'notes':>6s} {'stored':>7s} {'dup':>4s} {'gap':>4s} "
             f"{'killed@':>8s} {'wall s':>8s} {'notes/s':>8s}"]
    for fmt, f in report["formats"].items():
        lines.append(f"{fmt:12s} {f['decisions']:9d} {f['notes_with_decisions']:6d} {f['stored_documents']:7d} "
                     f"{f['duplicates']:4d} {f['gaps'] + f['unexpected_documents']:4d} "
                     f"{str(f['killed_at_seen'] or '-'):>8s} {f['wall_s']:8.1f} {f['notes_per_s'] or 0:8.1f}")
    lines.append(f"differences {report['differences']}  duplicates {report['duplicates']}  gaps {report['gaps']}  "
                 f"-> {'FAIL' if failed(report) else 'ok'}")
    if report["differing_notes"]:
        lines.append(f"differing note ids (first 20): {', '.join(report['differing_notes'])}")
    return "\n".join(lines)


async def _bench(plan, pipe, inputs: Inputs, tenants: dict[str, str], tag: str, chunk: int, reniced: bool) -> dict:
    from services.commands.demo.plan import SERVICES
    from services.core.secrets import SecretSettings
    from services.core.tenantdb import TenantPools

    env = plan.service_env(next(s for s in SERVICES if s.name == "ingest"))
    lanes = [r.proc.pid for r in pipe.supervisor.running.values()] if reniced else []
    if reniced:
        renice(lanes)
    pools = TenantPools(plan.settings, SecretSettings.from_env())
    backfills: list[int] = []

    def tick(pid: int | None) -> None:
        if pid is not None:
            backfills.append(pid)
        if reniced:  # the backfill lowers its own priority once started; rules workers start later
            renice([*lanes, *backfills[-1:]])
    try:
        runs = []
        async with Lane(plan.settings) as lane:
            for fmt in FORMATS:
                name = f"{tag}-{fmt}"
                runs.append(await crawl(inputs, fmt, tenants[fmt], name, env=env, pools=pools, lane=lane, chunk=chunk,
                                        kill_at=inputs.n // 2 if fmt == "omop" else None, tick=tick))
                print(f"{fmt}: {inputs.n} notes decided in {runs[-1].wall_s:.1f} s", flush=True)
        return await check(inputs, runs, pools)
    finally:
        await pools.close()


def main(argv: list[str]) -> int:
    from services.commands.demo.pipeline import Pipeline
    from services.commands.demo.plan import DemoPlan
    from services.commands.demo.tenants import DemoTenant
    from services.core.logging import configure

    parser = argparse.ArgumentParser(prog="python -m bench.crawl_formats", description=__doc__.split("\n\n")[0])
    parser.add_argument("--notes", type=int, default=DEFAULT_N, help=f"notes per format (default {DEFAULT_N})")
    parser.add_argument("--chunk", type=int, default=DEFAULT_CHUNK, help="notes per backfill transaction")
    parser.add_argument("--renice", action="store_true", help="run the batch lane at normal priority")
    args = parser.parse_args(argv[1:])
    if args.notes < 2 * args.chunk:
        parser.error(f"--notes must be at least twice --chunk ({args.chunk}) to kill a run midway")
    configure("warning")
    tag = datetime.now(timezone.utc).strftime("cf%m%d%H%M%S")
    tenants = {"omop": f"{tag}-omop", "bulk-ndjson": f"{tag}-ndjson"}
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    inputs = write_inputs(OUT_DIR / "crawl-formats", args.notes)
    plan = DemoPlan.create("bench-crawl-formats", port_base=BENCH_PORT_BASE)
    pipe = Pipeline(plan, tuple(DemoTenant(t, f"Crawl formats {fmt}", "silent", {"engine": "rules"})
                                for fmt, t in tenants.items()), log=print, optional=False, batch_lane=True)
    try:
        pipe.up()
        report = asyncio.run(_bench(plan, pipe, inputs, tenants, tag, args.chunk, args.renice))
    except CheckError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        pipe.down()
    report.update(chunk=args.chunk, batch_lane_reniced_to_0=args.renice, load_average=os.getloadavg(),
                  measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    (OUT_DIR / "crawl_formats.json").write_text(json.dumps(report, indent=2, default=str))
    print(table(report))
    print(f"wrote {OUT_DIR / 'crawl_formats.json'}")
    return 1 if failed(report) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
