"""Benchmark: a silent crawl through the batch lane, and bare medspaCy on the same notes in the same run.

N realistic notes (the texts of ``tests/data/realistic/tune.jsonl``, about 3 KB median, repeated
with new ids) are written to an NDJSON file and run as `vigil backfill run` (its own process:
document store, sealed text, checkpoints, ``batch-events``) through the batch lane as in
production: ``extraction --lane batch`` (the note opened from its event - GetNote from the store
for a note too long to carry - and Extract with the rules engine, on the batch lane's own tools and
inference servers) and ``triage --lane batch`` (silent decisions
to the ledger and ``batch-decisions``), every service its own process (``Pipeline(batch_lane=True)``).
The clock runs from the backfill's start until triage-batch has handled every note's findings
event (its counters: the note's decisions are in the ledger); the run then waits, off the clock,
until every offset is committed (at most once a second; printed too). The clock
starts once both batch stages hold their partitions (``assigned``: the dev broker can keep a new
member of a group waiting ~10 s).

Baseline (same run, same notes): ``nlp(text)`` of bare medspaCy in this process: medspaCy's
tokenizer, spaCy's sentencizer, medspaCy's TargetMatcher and ConText with the engine's target and
modifier rules, no Vigil code (``bare_medspacy``). Ratio = pipeline notes/s / bare notes/s. CPU per note is
each of our processes' user + system CPU (with its worker processes) over the run divided by N (the broker, PostgreSQL and
Redis are shared servers and not counted).

    python -m bench.crawl [N] [--renice]     (make bench-crawl; N defaults to 2000)

``--renice``: the batch lane's processes (niced in production) run at normal priority for the
measurement - on a host shared with other work, niced processes get next to no CPU.
Writes artifacts/bench/crawl.json.
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import psutil

from services.commands.demo.pipeline import Pipeline
from services.commands.demo.plan import SERVICES, DemoPlan
from services.commands.demo.tenants import DemoTenant
from services.core.bus.topics import topic_partitions
from services.core.logging import configure

REPO = Path(__file__).resolve().parents[1]
TUNE = REPO / "tests" / "data" / "realistic" / "tune.jsonl"
BENCH_PORT_BASE = 18500
TENANT = DemoTenant("bench-crawl", "Benchmark Crawl", "silent", {"engine": "rules"})
DEFAULT_N = 2000
OUT_DIR = Path("artifacts/bench")
POLL_S = 0.5
#: triage-batch's counters are read this often (the clock's resolution).
HANDLED_POLL_S = 0.1
#: Give up when no note was finished for this long.
STALL_S = 120.0
GOAL_RATE = 150.0
GOAL_RATIO = 0.7


def write_notes(path: Path, n: int, tag: str) -> list[str]:
    rows = [json.loads(line) for line in TUNE.read_text().splitlines() if line.strip()]
    texts = []
    with path.open("w") as out:
        for i in range(n):
            row = rows[i % len(rows)]
            texts.append(row["text"])
            out.write(json.dumps({"id": f"{tag}-{i:06d}", "text": row["text"], "note_type": row.get("note_type"),
                                  "note_time": f"2025-{1 + i % 12:02d}-{1 + i % 28:02d}T10:00:00Z"}) + "\n")
    return texts


def bare_medspacy():
    """The bare medspaCy pipeline, with no Vigil code: medspaCy's tokenizer, spaCy's sentencizer,
    medspaCy's TargetMatcher and ConText, loaded with the engine's own target and modifier rules."""
    import medspacy
    from medspacy.context import ConTextRule

    from services.inference.rules.modifiers import MODIFIER_RULES, TERMINATING_TYPES
    from services.inference.rules.pipeline import _context_rule, target_rules

    nlp = medspacy.load(medspacy_enable=["medspacy_tokenizer", "medspacy_target_matcher"], load_rules=False)
    nlp.add_pipe("sentencizer", before="medspacy_target_matcher")
    nlp.get_pipe("medspacy_target_matcher").add(target_rules())
    context = nlp.add_pipe("medspacy_context", config={"rules": None, "span_attrs": None,
                                                       "terminating_types": TERMINATING_TYPES})
    context.add([_context_rule(ConTextRule, phrase, category, direction, scope)
                 for phrase, category, direction, scope in MODIFIER_RULES])
    return nlp


def bare_rate(texts: list[str]) -> tuple[float, float]:
    """Bare medspaCy over the notes: (notes per second of wall time, CPU ms per note)."""
    nlp = bare_medspacy()
    for text in texts[:20]:  # warm-up
        nlp(text)
    started, cpu_started = time.perf_counter(), time.process_time()
    for text in texts:
        nlp(text)
    return len(texts) / (time.perf_counter() - started), (time.process_time() - cpu_started) / len(texts) * 1000


def cpu(pid: int) -> float:
    """User + system CPU seconds of the process and its live children (the inference server's
    rules-engine worker processes)."""
    return sum(cpu_split(pid))


def cpu_split(pid: int) -> tuple[float, float]:
    """(the process's own CPU seconds, its live children's)."""
    def used(p) -> float:
        try:
            times = p.cpu_times()
            return times.user + times.system
        except psutil.Error:
            return 0.0
    try:
        process = psutil.Process(pid)
        return used(process), sum(used(p) for p in process.children(recursive=True))
    except psutil.Error:
        return 0.0, 0.0


async def committed(settings, tenant: str, group: str, stream: str) -> tuple[int, int]:
    """(offsets committed by ``group`` on the stream, end offsets) summed over partitions."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient

    kwargs = settings.kafka.client_kwargs()
    consumer, admin = AIOKafkaConsumer(enable_auto_commit=False, **kwargs), AIOKafkaAdminClient(**kwargs)
    await consumer.start()
    await admin.start()
    try:
        return await committed_with(consumer, admin, tenant, group, stream)
    finally:
        await admin.close()
        await consumer.stop()


async def committed_with(consumer, admin, tenant: str, group: str, stream: str) -> tuple[int, int]:
    """``committed`` with a started consumer and admin client (kept open by callers that poll)."""
    from aiokafka import TopicPartition

    topic = f"vigil.{tenant}.{stream}"
    tps = [TopicPartition(topic, p) for p in sorted(await topic_partitions(consumer, topic))]
    ends = await consumer.end_offsets(tps)
    done = await admin.list_consumer_group_offsets(f"vigil.{tenant}.{group}", partitions=tps)
    return (sum(max(0, done[tp].offset) for tp in tps if tp in done), sum(ends.values()))


class Progress:
    """The two batch stages' committed and end offsets of the tenant's batch topics, polled on one
    consumer and one admin client kept open for the run."""

    def __init__(self, settings):
        from aiokafka import AIOKafkaConsumer
        from aiokafka.admin import AIOKafkaAdminClient

        kwargs = settings.kafka.client_kwargs()
        self.consumer, self.admin = AIOKafkaConsumer(enable_auto_commit=False, **kwargs), AIOKafkaAdminClient(**kwargs)

    async def __aenter__(self) -> "Progress":
        await self.consumer.start()
        await self.admin.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.admin.close()
        await self.consumer.stop()

    async def read(self) -> tuple[int, int, int, int]:
        """(events committed, events end, findings committed, findings end)."""
        events = await committed_with(self.consumer, self.admin, TENANT.id, "extraction-batch", "batch-events")
        findings = await committed_with(self.consumer, self.admin, TENANT.id, "triage-batch", "batch-findings")
        return (*events, *findings)


def metrics_url(plan, stage: str) -> str:
    return f"http://127.0.0.1:{plan.port(next(s for s in SERVICES if s.name == stage).port_key)}/metrics"


def stage_metric(url: str, names: tuple[str, ...], stage: str) -> float:
    """The sum of the named metrics of ``stage`` for the benchmark's tenant, from its /metrics page."""
    import urllib.request

    body = urllib.request.urlopen(url, timeout=2).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
               if line.startswith(names) and f'stage="{stage}"' in line and f'tenant="{TENANT.id}"' in line)


def handled(url: str) -> float:
    """Findings events triage-batch is through with (its handler succeeded - the note's decisions
    are in the ledger - or the event was dead-lettered), from its own counters."""
    return stage_metric(url, ("vigil_stage_succeeded_total{", "vigil_stage_dead_lettered_total{"), "triage-batch")


async def wait_done(settings, n: int, backfill: subprocess.Popen, triage_metrics: str,
                    reniced=()) -> tuple[int, float, int, float, list]:
    """Until the backfill exited, triage-batch handled every note's findings event, extraction-batch
    committed every batch event and triage-batch every finding event (counted from the offsets
    before the run: the tenant's topics outlive a run); returns the backfill's exit status, its CPU
    seconds (reaped here with its resource usage), the number of notes decided in this run, the
    seconds until the last was decided (its decisions in the ledger: the clock), and the progress
    samples (seconds from the start, batch events and findings events committed in this run,
    findings events handled; the dev broker's listed end offsets trail the real ones, so they are
    not sampled). Offsets are committed at most once a second, so "committed" trails "decided"."""
    started = time.monotonic()
    handled_start = handled(triage_metrics)
    async with Progress(settings) as progress:
        events_start, _, findings_start, _ = await progress.read()
        samples: list[tuple[float, int, int, int]] = []
        last, last_change = None, time.monotonic()
        exited: tuple[int, float] | None = None
        decided_s: float | None = None
        next_read = 0.0  # committed offsets are read every POLL_S, triage-batch's counters every HANDLED_POLL_S
        while True:
            if exited is None:
                renice(reniced)  # the backfill lowers its own priority when it starts
                pid, status, usage = os.wait4(backfill.pid, os.WNOHANG)
                if pid:
                    exited = (os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime)
                    if exited[0] != 0:
                        raise RuntimeError(f"vigil backfill run exited {exited[0]}: {backfill.stderr.read()[-800:]!r}")
            done_handling = handled(triage_metrics) - handled_start
            if decided_s is None and done_handling >= n:
                decided_s = time.monotonic() - started
            if decided_s is None and time.monotonic() < next_read:
                await asyncio.sleep(HANDLED_POLL_S)
                continue
            next_read = time.monotonic() + POLL_S
            events_done, events_end, findings_done, findings_end = await progress.read()
            decided = findings_done - findings_start
            samples.append((round(time.monotonic() - started, 2), events_done - events_start, decided,
                            int(done_handling)))
            # Done when this run's n batch events and their n findings events are committed. The
            # broker's end offsets alone are not enough: the dev broker (Tansu) can report end offsets
            # below offsets already committed, which ended runs early with notes still queued.
            if (exited is not None and decided_s is not None and events_done - events_start >= n and decided >= n
                    and events_done >= events_end and findings_done >= findings_end):
                return (*exited, decided, decided_s, samples)
            if (findings_done, events_done) != last:
                last, last_change = (findings_done, events_done), time.monotonic()
            elif time.monotonic() - last_change > STALL_S:
                raise RuntimeError(f"no progress for {STALL_S:.0f} s ({decided}/{n} notes decided)")
            await asyncio.sleep(HANDLED_POLL_S)


async def drain(settings) -> None:
    """Until the batch lane has no backlog (events of an earlier, interrupted run): the clock and
    the CPU counters start on an idle lane."""
    last, last_change = None, time.monotonic()
    async with Progress(settings) as progress:
        while True:
            events_done, events_end, findings_done, findings_end = await progress.read()
            if events_done >= events_end and findings_done >= findings_end:
                return
            if (findings_done, events_done) != last:
                last, last_change = (findings_done, events_done), time.monotonic()
            elif time.monotonic() - last_change > STALL_S:
                raise RuntimeError(f"the batch lane's backlog does not drain ({events_end - events_done} events left)")
            await asyncio.sleep(POLL_S)


def assigned(plan, stages: tuple[str, ...] = ("extraction-batch", "triage-batch"), timeout_s: float = 90.0) -> float:
    """Until each batch stage holds partitions of its input topic (its
    ``vigil_stage_assigned_partitions``); returns the seconds waited. The dev broker (Tansu) can
    answer a new member's JoinGroup naming as leader a member that has left the group (the stage's
    previous process): the new one then holds no partition until the departed member's session
    ends (~10 s with a bare consumer), in which a run's notes wait. Apache Kafka elects a current member."""
    started = time.monotonic()
    waiting = set(stages)
    while waiting and time.monotonic() - started < timeout_s:
        for stage in list(waiting):
            try:
                held = stage_metric(metrics_url(plan, stage), ("vigil_stage_assigned_partitions{",), stage)
            except OSError:
                continue
            if held:
                waiting.discard(stage)
        if waiting:
            time.sleep(POLL_S / 5)
    if waiting:
        print(f"WARNING: {', '.join(sorted(waiting))} still without partitions after {timeout_s:.0f} s")
    return time.monotonic() - started


def renice(pids, value: int = 0) -> None:
    """Set the CPU priority of the processes and their children (``--renice``)."""
    for pid in pids:
        try:
            process = psutil.Process(pid)
            for p in (process, *process.children(recursive=True)):
                if p.nice() != value:
                    p.nice(value)
        except psutil.Error:
            pass


def main(argv: list[str]) -> None:
    args = [a for a in argv[1:] if not a.startswith("--")]
    n = int(args[0]) if args else DEFAULT_N
    #: ``--renice``: the batch lane runs at normal priority for the measurement (on a host shared
    #: with other work its niced processes get next to no CPU and the rate measures the others)
    reniced = "--renice" in argv
    configure("warning")
    tag = datetime.now(timezone.utc).strftime("c%H%M%S")
    plan = DemoPlan.create("bench-crawl", port_base=BENCH_PORT_BASE)
    pipe = Pipeline(plan, (TENANT,), log=print, optional=False, batch_lane=True)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    notes = OUT_DIR / "crawl-notes.ndjson"
    texts = write_notes(notes, n, tag)
    sizes = sorted(map(len, texts))
    try:
        pipe.up()
        procs = {name: r.proc.pid for name, r in pipe.supervisor.running.items()}
        if reniced:
            renice(procs.values())
        asyncio.run(drain(plan.settings))
        join_s = assigned(plan)
        before = {name: cpu_split(pid) for name, pid in procs.items()}
        env = plan.service_env(next(s for s in SERVICES if s.name == "ingest"))
        triage_metrics = metrics_url(plan, "triage-batch")
        started = time.perf_counter()
        backfill = subprocess.Popen(
            [sys.executable, "-m", "tests.fixtures.batch_cli", "backfill", "run", "--tenant", TENANT.id, "--source",
             "jsonl", str(notes), "--name", tag, "--silent", "--quiet"], cwd=str(REPO), env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if reniced:
            renice(procs.values())
        _, backfill_cpu, decided, elapsed, samples = asyncio.run(wait_done(
            plan.settings, n, backfill, triage_metrics, (backfill.pid, *procs.values()) if reniced else ()))
        committed_s = time.perf_counter() - started
        after = {name: cpu_split(pid) for name, pid in procs.items()}
    finally:
        pipe.down()
    rate = n / elapsed
    bare, bare_cpu_ms = bare_rate(texts)
    per_note = {name: (sum(after[name]) - sum(before[name])) / n * 1000 for name in procs}
    workers = {name: (after[name][1] - before[name][1]) / n * 1000 for name in procs if after[name][1]}
    per_note["backfill (vigil backfill run)"] = backfill_cpu / n * 1000
    lane = {k: v for k, v in per_note.items() if k.endswith("-batch") or k.startswith("backfill")}
    lane_cpu_ms = sum(lane.values())
    results = {"notes": n, "decided": decided, "median_chars": sizes[len(sizes) // 2], "elapsed_s": round(elapsed, 2),
               "offsets_committed_s": round(committed_s, 2),
               "notes_per_s": round(rate, 1), "bare_medspacy_notes_per_s": round(bare, 1),
               "ratio": round(rate / bare, 3), "cpu_ms_per_note": {k: round(v, 2) for k, v in per_note.items()},
               "of_which_worker_processes_ms_per_note": {k: round(v, 2) for k, v in workers.items()},
               "batch_lane_cpu_ms_per_note": round(lane_cpu_ms, 2), "bare_cpu_ms_per_note": round(bare_cpu_ms, 2),
               "cpu_ratio": round(bare_cpu_ms / lane_cpu_ms, 3),
               "progress": {"columns": ["seconds", "events_committed", "findings_committed", "findings_handled"],
                            "samples": samples},
               "waited_for_partitions_s": round(join_s, 1),
               "load_average": os.getloadavg(), "batch_lane_reniced_to_0": reniced,
               "cores": psutil.cpu_count(), "goal": {"notes_per_s": GOAL_RATE, "ratio": GOAL_RATIO},
               "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    (OUT_DIR / "crawl.json").write_text(json.dumps(results, indent=2))
    print(f"{n} notes (median {results['median_chars']} chars) through the batch lane, decided in {elapsed:.1f} s: "
          f"{rate:.1f} notes/s (goal {GOAL_RATE:.0f}); every offset committed at {committed_s:.1f} s")
    if decided != n:
        print(f"WARNING: {n - decided} of {n} notes were not decided (dead-lettered or skipped: see the logs)")
    print(f"bare medspaCy on the same notes: {bare:.1f} notes/s; ratio {rate / bare:.3f} (goal {GOAL_RATIO})")
    print(f"CPU per note: batch lane (backfill, tools-batch, extraction-batch, inference-batch, triage-batch) "
          f"{lane_cpu_ms:.1f} ms vs bare medspaCy {bare_cpu_ms:.1f} ms: CPU ratio {bare_cpu_ms / lane_cpu_ms:.3f}; "
          f"load average {os.getloadavg()[0]:.1f} on {psutil.cpu_count()} cores")
    print("CPU per note (ms, user + system):")
    for name, ms in sorted(per_note.items(), key=lambda kv: -kv[1]):
        print(f"  {name:32s} {ms:7.2f}" + (f"   (worker processes {workers[name]:.2f})" if name in workers else ""))
    print(f"  {'total (our processes)':32s} {sum(per_note.values()):7.2f}   on {psutil.cpu_count()} cores")
    print(f"wrote {OUT_DIR / 'crawl.json'}")


if __name__ == "__main__":
    main(sys.argv)
