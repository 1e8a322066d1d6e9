"""`vigil demo`: the whole pipeline on the embedded stack, a synthetic clinic day for two
tenants, clinician decisions in the inbox, and a summary computed from what was written."""
from __future__ import annotations

import asyncio
import signal
import time
from datetime import datetime, timedelta, timezone

import asyncpg
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from services.commands.demo import driver, summary as summaries
from services.commands.demo.notes import NEGATIVE_NOTES, clinic_day
from services.commands.demo.pipeline import Pipeline, PipelineError
from services.commands.demo.plan import DemoPlan
from services.commands.demo.supervisor import SupervisorError
from services.commands.demo.tenants import DEMO_TENANTS, ehr_settings
from services.core import devstack
from services.core.config import ConfigError
from services.core.crypto import Keyring
from services.core.db import create_pool
from services.core.errors import RetryableError, VigilError
from services.core.decisions import DecisionLedger
from services.core.secrets import SecretSettings
from services.core.tenantdb import TenantPools
from services.ehr.inbox import session as inbox_session

console = Console()
#: Notes are written at this pace (a busy clinic compressed: ~3 notes/s over both tenants).
NOTE_INTERVAL_S = 0.3
DRAIN_TIMEOUT_S = 180.0
WARM_UP_TIMEOUT_S = 60.0
#: Patients answer the scheduling agent 4 times, 3 s apart (offer -> pick -> confirm needs 2 answers).
PATIENT_ROUNDS = 4
PATIENT_ROUND_S = 3.0
FEEDBACK_TIMEOUT_S = 45.0
POLL_S = 0.5


async def _ledger(settings):
    pools = TenantPools(settings, SecretSettings.from_env())
    return pools, DecisionLedger(pools, Keyring(pools, pools.secrets))


async def warm_up(pipe: Pipeline, run_id: str, watcher: driver.FindingsWatcher, progress: Progress,
                  timeout: float = WARM_UP_TIMEOUT_S) -> None:
    """One negative note per tenant through ingest and extraction (consumer groups joined, channels
    open) before the day starts; not counted in the summary."""
    bar = progress.add_task("warming up (one note per tenant)", total=len(pipe.tenants))
    pending = {}
    for t in pipe.tenants:
        run = driver.TenantRun(t.id, pipe.client(t.id), pipe.practitioners[t.id])
        async with run.client:
            day = clinic_day(1, seed=0)
            await driver.create_patients(run, f"{run_id}-warm", day)
            note = await driver.send_note(run, f"{run_id}-warm", 0, day.patients[0].key, NEGATIVE_NOTES[0].format(
                drug=day.patients[0].drug), None, run.practitioners["onc-1"])
        pending[t.id] = note.id
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for t, note_id in list(pending.items()):
            if note_id in watcher.seen[t]:
                del pending[t]
                progress.advance(bar)
        await asyncio.sleep(POLL_S)


async def stream_day(pipe: Pipeline, n_notes: int, run_id: str, progress: Progress) -> dict[str, driver.TenantRun]:
    runs = {}
    for index, t in enumerate(pipe.tenants):
        run = driver.TenantRun(t.id, pipe.client(t.id), pipe.practitioners[t.id])
        await run.client.start()
        day = clinic_day(n_notes, seed=hash((run_id, t.id)) & 0xFFFF)
        await driver.create_patients(run, run_id, day)
        runs[t.id] = (run, day)
    bars = {t: progress.add_task(f"{t} notes sent", total=len(day.notes)) for t, (run, day) in runs.items()}
    for i in range(max(len(day.notes) for _, day in runs.values())):
        for t, (run, day) in runs.items():
            if i < len(day.notes):
                planned = day.notes[i]
                author = run.practitioners[next(p.oncologist for p in day.patients if p.key == planned.patient)]
                await driver.send_note(run, run_id, i, planned.patient, planned.text, planned.expect, author)
                progress.advance(bars[t])
        await asyncio.sleep(NOTE_INTERVAL_S)
    for t, (run, day) in runs.items():
        for message in day.messages:
            await driver.send_message(run, message.patient, message.text, run.practitioners["onc-1"])
    return {t: run for t, (run, _) in runs.items()}


async def _polled(coro):
    """One poll of the ledger; a transient failure (a busy shared PostgreSQL: no free connection
    slot) is a missed poll, not the end of the demo."""
    try:
        return await coro
    except (asyncpg.TooManyConnectionsError, asyncpg.CannotConnectNowError, OSError, RetryableError):
        return None


async def drain(runs: dict[str, driver.TenantRun], watcher: driver.FindingsWatcher, ledger: DecisionLedger,
                period: summaries.RunPeriod, progress: Progress, triage_metrics: str, timeout: float = DRAIN_TIMEOUT_S) -> bool:
    """Until every note has its findings event, triage has finished every findings event seen
    (its stage counters, from ``triage_metrics``) and every writable decision is written."""
    bars = {t: progress.add_task(f"{t} notes through the pipeline", total=len(r.notes)) for t, r in runs.items()}
    deadline = time.monotonic() + timeout
    while True:
        done = True
        for t, run in runs.items():
            processed = sum(1 for n in run.notes if n.id in watcher.seen[t])
            progress.update(bars[t], completed=processed)
            rows = await _polled(summaries.ledger_rows(ledger, run, period))
            triaged = await driver.stage_finished(triage_metrics, "triage", t)
            done &= rows is not None and processed == len(run.notes) and triaged >= len(watcher.seen[t]) \
                and not summaries.pending_writes(rows)
        if done:
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(POLL_S)


async def clinician_round(pipe: Pipeline, runs: dict[str, driver.TenantRun], ledger: DecisionLedger,
                          period: summaries.RunPeriod) -> list[str]:
    """Per tenant: accept the first written Task, override the second (inbox pages)."""
    acted, secret = [], ehr_settings(pipe.plan).admin_secret
    for t, run in runs.items():
        tasks: list[tuple[str, str]] = []
        for row in await summaries.ledger_rows(ledger, run, period):
            owner = (row.get("output") or {}).get("owner") or f"Practitioner/{run.practitioners['onc-1']}"
            if row.get("task_id") and row["task_id"] not in [x for x, _ in tasks]:
                tasks.append((row["task_id"], owner.split("/")[-1]))
        for (task_id, practitioner), (decision, reason) in zip(tasks, (("accept", None), ("override", "other-cause"))):
            status = await driver.clinician_decides(pipe.plan.settings.ehr_url, secret, t, practitioner,
                                                    task_id.split("/")[-1], decision, reason)
            if status == 200:
                acted.append(f"{t}/{task_id}")
    return acted


async def patient_conversations(runs: dict[str, driver.TenantRun], rounds: int = PATIENT_ROUNDS) -> int:
    """Patients answer the scheduling agent's offers (pick a time, confirm) for a few rounds."""
    answers = 0
    for _ in range(rounds):
        for run in runs.values():
            answers += await driver.patients_reply(run)
        await asyncio.sleep(PATIENT_ROUND_S)
    return answers


async def wait_feedback(runs, ledger, period: summaries.RunPeriod, expected: int,
                        timeout: float = FEEDBACK_TIMEOUT_S) -> int:
    """Until the ledger holds a clinician action for ``expected`` of the run's Tasks; returns how many."""
    deadline = time.monotonic() + timeout
    while True:
        seen = 0
        for run in runs.values():
            rows = await _polled(summaries.ledger_rows(ledger, run, period)) or []
            seen += len(summaries.task_actions(rows, period))
        if seen >= expected or time.monotonic() > deadline:
            return seen
        await asyncio.sleep(POLL_S)


async def run_day(pipe: Pipeline, n_notes: int, *, conversations: bool = True
                  ) -> tuple[list[summaries.TenantSummary], dict]:
    run_id = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")
    period = summaries.RunPeriod(datetime.now(timezone.utc) - timedelta(seconds=5))
    pools, ledger = await _ledger(pipe.plan.settings)
    admin = await create_pool(pipe.plan.settings, min_size=1, max_size=2)
    watcher = driver.FindingsWatcher(pipe.plan.settings, [t.id for t in pipe.tenants])
    await watcher.start()
    info: dict = {}
    try:
        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
        with Progress(*columns, console=console) as progress:
            await warm_up(pipe, run_id, watcher, progress)
            runs = await stream_day(pipe, n_notes, run_id, progress)
            info["drained"] = await drain(runs, watcher, ledger, period, progress,
                                          f"http://127.0.0.1:{pipe.plan.port('triage')}/metrics")
        info["patient_answers"] = await patient_conversations(runs) if conversations else 0
        acted = await clinician_round(pipe, runs, ledger, period)
        info["clinician_actions"] = len(acted)
        info["feedback_recorded"] = await wait_feedback(runs, ledger, period, len(acted))
        period.close()
        info["period"] = period
        modes = {t.id: t.mode for t in pipe.tenants}
        result = [await summaries.summarize(run, modes[t], watcher.seen[t], ledger, admin, period)
                  for t, run in runs.items()]
        for run in runs.values():
            await run.client.close()
        return result, info
    finally:
        await watcher.stop()
        await admin.close()
        await pools.close()


def _fmt(value, spec: str = ".1f", none: str = "-") -> str:
    return none if value is None else format(value, spec)


#: (row label, value of one tenant's summary): the table has one column per tenant.
SUMMARY_ROWS = [
    ("mode", lambda s: s.mode),
    ("notes (through the pipeline / sent)", lambda s: f"{s.notes_processed}/{s.notes}"),
    ("findings", lambda s: str(s.findings)),
    ("decisions (written)", lambda s: f"{s.decisions} ({s.written})"),
    ("Tasks in the EHR", lambda s: str(s.tasks)),
    ("follow-ups booked", lambda s: str(s.followups_booked)),
    ("dead letters", lambda s: str(s.dead_letters)),
    ("override rate", lambda s: _fmt(s.override_rate, ".0%")),
    ("time-to-alert p50 (s)", lambda s: _fmt(s.p50, ".2f")),
    ("time-to-alert p95 (s)", lambda s: _fmt(s.p95, ".2f")),
]


def summary_table(rows: list[summaries.TenantSummary]) -> Table:
    table = Table(title="Vigil demo: one clinic day")
    table.add_column("")
    for s in rows:
        table.add_column(s.tenant, justify="right")
    for label, value in SUMMARY_ROWS:
        table.add_row(label, *(value(s) for s in rows))
    return table


def print_urls(pipe: Pipeline) -> None:
    secret = ehr_settings(pipe.plan).admin_secret
    for t in pipe.tenants:
        for key, practitioner in sorted(pipe.practitioners.get(t.id, {}).items()):
            token = inbox_session.issue_link(secret, t.id, practitioner)
            console.print(f"inbox {t.id} ({key}): {pipe.plan.settings.ehr_url}/inbox/{t.id}/login?token={token}")
    console.print(f"inbox links work once and for {inbox_session.LINK_LIFETIME_S // 60} minutes; a new one: "
                  "vigil ehr inbox-link --tenant T --practitioner P")
    if pipe.supervisor and "control" in pipe.supervisor.running and \
            pipe.plan.service_env(pipe.supervisor.running["control"].service)["VIGIL_CONTROL_CONSOLE_ADDR"] != "off":
        console.print(f"console: {pipe.plan.console_url}")
    else:
        console.print("console: not available in this checkout (services/control/console)")


def _wait_for_interrupt() -> None:
    """Until Ctrl-C or SIGTERM (handlers set explicitly: a shell's background job starts with
    SIGINT ignored, and Python then raises no KeyboardInterrupt)."""
    stop = {"now": False}

    def handler(*_):
        stop["now"] = True
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop["now"]:
            time.sleep(0.5)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run(keep: bool = False, notes: int = 12) -> list[summaries.TenantSummary]:
    console.rule("Vigil demo")
    started = time.monotonic()
    try:
        plan = DemoPlan.create()
    except ConfigError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2)
    pipe = Pipeline(plan, DEMO_TENANTS, log=lambda m: console.print(f"[dim]{m}[/]"))
    try:
        pipe.up()
        if pipe.skipped or pipe.failed:
            console.print(f"[yellow]running without:[/] {', '.join(pipe.skipped + pipe.failed)} "
                          f"(not in this checkout, or failed to start: see {plan.logs_dir})")
        console.print(f"[dim]services up ({', '.join(pipe.supervisor.running)}); logs in {plan.logs_dir}[/]")
        rows, info = asyncio.run(run_day(pipe, notes))
        console.print(summary_table(rows))
        if not info["drained"]:
            console.print(f"[yellow]the pipeline did not drain within {DRAIN_TIMEOUT_S:.0f}s; "
                          f"see the logs in {plan.logs_dir}[/]")
        console.print(f"clinician actions in the inbox: {info['clinician_actions']} "
                      f"({info['feedback_recorded']} recorded in the decision ledger)")
        period = info["period"]
        console.print("the monitor's report of just this run (its own period):")
        for t in pipe.tenants:
            console.print(f"  vigil report --tenant {t.id} {period.options()} --out {plan.folder / 'report' / t.id}")
        dead = [name for name in pipe.supervisor.dead() if name not in pipe.failed]
        if dead:
            console.print(f"[red]services that exited:[/] {', '.join(dead)}")
        print_urls(pipe)
        console.print(f"[dim]demo took {time.monotonic() - started:.0f}s[/]")
        if keep:
            console.print("[bold]running; Ctrl-C stops everything the demo started[/]")
            _wait_for_interrupt()
        return rows
    except (PipelineError, SupervisorError, devstack.DevStackError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1)
    except (VigilError, asyncpg.PostgresError, OSError) as exc:
        console.print(f"[red]error:[/] the demo stopped: {type(exc).__name__}: {str(exc)[:300]} "
                      f"(service logs in {plan.logs_dir})")
        raise typer.Exit(1)
    finally:
        console.print("[dim]stopping what the demo started[/]")
        pipe.down()
