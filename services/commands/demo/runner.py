"""`vigil demo`: the whole pipeline on the embedded stack, a synthetic clinic day for three
tenants (two FHIR servers, one Epic-like site fed by HL7v2), clinician decisions in the inbox,
CDS Hooks patient-view calls, and a summary computed from what was written and delivered."""
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
from services.commands.demo.tenants import DEMO_TENANTS, cds_token, control_client, ehr_settings
from services.ehr import seed as ehr_seed
from services.core import devstack
from services.core.config import ConfigError
from services.core.crypto import Keyring
from services.core.errors import RetryableError, VigilError
from services.triage.ledger import DecisionLedger
from services.core.secrets import SecretSettings
from services.core.tenantdb import TenantPools
from services.ehr.inbox import session as inbox_session

console = Console()
#: Notes are written at this pace (a busy clinic compressed: ~3 notes/s per tenant).
NOTE_INTERVAL_S = 0.3
DRAIN_TIMEOUT_S = 180.0
WARM_UP_TIMEOUT_S = 60.0
#: Patients answer the scheduling agent 4 times, 3 s apart (offer -> pick -> confirm needs 2 answers).
PATIENT_ROUNDS = 4
PATIENT_ROUND_S = 3.0
FEEDBACK_TIMEOUT_S = 45.0
POLL_S = 0.5
#: How long the card count waits for cdshooks' read model to take the last decisions and Tasks.
CDS_CATCH_UP_S = 30.0


async def _ledger(settings):
    pools = TenantPools(settings, SecretSettings.from_env())
    return pools, DecisionLedger(pools, Keyring(pools, pools.secrets))


def tenant_run(pipe: Pipeline, t) -> driver.TenantRun:
    run = driver.TenantRun(t.id, pipe.client(t.id), pipe.practitioners[t.id])
    if t.hl7_feed:  # its interface engine sends the notes to ingest's MLLP listener
        run.feed = driver.Hl7Feed("127.0.0.1", pipe.plan.port("ingest-mllp"), t.id.upper())
    return run


NPIS = {key: npi for key, _family, _given, npi, _specialty in ehr_seed.PRACTITIONERS}


async def send_planned(run: driver.TenantRun, run_id: str, index: int, day, patient_key: str, text: str,
                       expect: str | None, author_key: str) -> driver.SentNote:
    """One note into the tenant's EHR (FHIR) or down its HL7v2 feed."""
    if run.feed is not None:
        patient = next(p for p in day.patients if p.key == patient_key)
        return await driver.send_hl7_note(run, run_id, index, patient, text, expect, NPIS[author_key])
    return await driver.send_note(run, run_id, index, patient_key, text, expect, run.practitioners[author_key])


async def warm_up(pipe: Pipeline, run_id: str, watcher: driver.FindingsWatcher, progress: Progress,
                  timeout: float = WARM_UP_TIMEOUT_S) -> None:
    """One negative note per tenant through ingest and extraction (consumer groups joined, channels
    open) before the day starts; not counted in the summary."""
    bar = progress.add_task("warming up (one note per tenant)", total=len(pipe.tenants))
    pending = {}
    for t in pipe.tenants:
        run = tenant_run(pipe, t)
        async with run.client:
            day = clinic_day(1, seed=0)
            await driver.create_patients(run, f"{run_id}-warm", day)
            note = await send_planned(run, f"{run_id}-warm", 0, day, day.patients[0].key, NEGATIVE_NOTES[0].format(
                drug=day.patients[0].drug), None, "onc-1")
        if run.feed is not None:
            await run.feed.close()
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
        run = tenant_run(pipe, t)
        await run.client.start()
        day = clinic_day(n_notes, seed=hash((run_id, t.id)) & 0xFFFF)
        await driver.create_patients(run, run_id, day)
        runs[t.id] = (run, day)
    bars = {t: progress.add_task(f"{t} notes sent", total=len(day.notes)) for t, (run, day) in runs.items()}
    for i in range(max(len(day.notes) for _, day in runs.values())):
        for t, (run, day) in runs.items():
            if i < len(day.notes):
                planned = day.notes[i]
                author = next(p.oncologist for p in day.patients if p.key == planned.patient)
                await send_planned(run, run_id, i, day, planned.patient, planned.text, planned.expect, author)
                progress.advance(bars[t])
        await asyncio.sleep(NOTE_INTERVAL_S)
    for t, (run, day) in runs.items():
        if run.feed is not None:  # patient messages reach Vigil through the EHR's subscriptions: none here
            await run.feed.close()
            continue
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


def _acknowledged(pipe: Pipeline) -> dict:
    """MSH-10 -> when the interface engine stand-in first acknowledged it."""
    out = {}
    for d in pipe.engine.received if pipe.engine is not None else []:
        out.setdefault(d.control_id, d.at)
    return out


def _delivered(pipe: Pipeline, t, rows: list[dict]) -> bool:
    """Every result of the tenant has reached it: written to the EHR (FHIR), acknowledged by the
    interface engine (HL7v2), or (CDS Hooks only) recorded in the ledger, where the cards come from."""
    profile = t.profile(pipe.plan)
    if profile.delivers("fhir"):
        return not summaries.pending_writes(rows)
    if profile.delivers("hl7v2"):
        expected = summaries.result_rows(rows)
        return len(summaries.oru_times(rows, t.id, _acknowledged(pipe))) == len(expected)
    return True


async def drain(pipe: Pipeline, runs: dict[str, driver.TenantRun], watcher: driver.FindingsWatcher,
                ledger: DecisionLedger, period: summaries.RunPeriod, progress: Progress, triage_metrics: str,
                timeout: float = DRAIN_TIMEOUT_S) -> bool:
    """Until every note has its findings event, triage has finished every findings event seen
    (its stage counters, from ``triage_metrics``) and every result is delivered on the tenant's
    channel (``_delivered``)."""
    tenants = {t.id: t for t in pipe.tenants}
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
                and _delivered(pipe, tenants[t], rows)
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


async def projection_caught_up(pipe: Pipeline, tenant: str, timeout: float = CDS_CATCH_UP_S) -> bool:
    """Until cdshooks' read model has taken every decision on the tenant's ``actions`` stream and
    every Task on its ``feedback`` stream (its ``cdshooks-actions`` and ``cdshooks-feedback`` groups
    committed the streams' ends): the cards are read from it."""
    from services.cdshooks.app import ACTIONS_STAGE, FEEDBACK_STAGE
    from services.core import contracts

    deadline = time.monotonic() + timeout
    while True:
        if (await driver.stage_caught_up(pipe.plan.settings, tenant, ACTIONS_STAGE, contracts.ACTIONS)
                and await driver.stage_caught_up(pipe.plan.settings, tenant, FEEDBACK_STAGE, contracts.FEEDBACK)):
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(POLL_S)


async def cds_cards(pipe: Pipeline, runs: dict[str, driver.TenantRun]) -> dict[str, int]:
    """Per tenant that takes results as CDS Hooks cards: the EHR opens each run patient's chart
    (one patient-view call each, a fresh JWT of the tenant's CDS client) and the cards are counted."""
    from services.cdshooks.cards import SERVICE_ID
    from services.core.tenancy import Registry

    registry = Registry.load(pipe.plan.settings.tenants_file)
    out = {}
    for t in pipe.tenants:
        if t.id not in runs or not t.profile().delivers("cds-hooks"):
            continue
        if not await projection_caught_up(pipe, t.id):
            console.print(f"[yellow]{t.id}: the CDS read model has not caught up with the actions stream "
                          f"within {CDS_CATCH_UP_S:.0f} s; its cards are counted as they are[/]")
        kid = registry.get(t.id).setting("cds_client_kid")
        run, total = runs[t.id], 0
        try:
            for patient in run.patients.values():
                total += len(await driver.patient_view(pipe.plan.cds_url, t.id,
                                                       lambda: cds_token(pipe.plan, t.id, kid, SERVICE_ID), patient,
                                                       f"Practitioner/{run.practitioners['onc-1']}"))
        except RuntimeError as exc:  # the summary shows "-" rather than a partial count
            console.print(f"[yellow]{exc}; its cards are not counted (see {pipe.plan.logs_dir / 'cdshooks.log'})[/]")
            continue
        out[t.id] = total
    return out


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
    watcher = driver.FindingsWatcher(pipe.plan.settings, [t.id for t in pipe.tenants])
    await watcher.start()
    info: dict = {}
    try:
        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
        with Progress(*columns, console=console) as progress:
            await warm_up(pipe, run_id, watcher, progress)
            runs = await stream_day(pipe, n_notes, run_id, progress)
            info["drained"] = await drain(pipe, runs, watcher, ledger, period, progress,
                                          f"http://127.0.0.1:{pipe.plan.port('triage')}/metrics")
        cards = await cds_cards(pipe, runs) if pipe.supervisor and "cdshooks" in pipe.supervisor.running else {}
        info["patient_answers"] = await patient_conversations(runs) if conversations else 0
        acted = await clinician_round(pipe, runs, ledger, period)
        info["clinician_actions"] = len(acted)
        info["feedback_recorded"] = await wait_feedback(runs, ledger, period, len(acted))
        period.close()
        info["period"] = period
        tenants = {t.id: t for t in pipe.tenants}
        acknowledged = _acknowledged(pipe)
        async with control_client(pipe.plan) as control:  # dead-letter counts: the control service's API
            result = [await summaries.summarize(run, tenants[t].mode, watcher.seen[t], ledger, control, period,
                                                results=tenants[t].profile().results, acknowledged=acknowledged,
                                                cds_cards=cards.get(t))
                      for t, run in runs.items()]
        for run in runs.values():
            await run.client.close()
        return result, info
    finally:
        await watcher.stop()
        await pools.close()


def _fmt(value, spec: str = ".1f", none: str = "-") -> str:
    return none if value is None else format(value, spec)


#: (row label, value of one tenant's summary): the table has one column per tenant.
SUMMARY_ROWS = [
    ("mode", lambda s: s.mode),
    ("notes (through the pipeline / sent)", lambda s: f"{s.notes_processed}/{s.notes}"),
    ("findings", lambda s: str(s.findings)),
    ("decisions (written)", lambda s: f"{s.decisions} ({s.written})"),
    ("notes arrive by", lambda s: "HL7v2 feed" if s.hl7_notes else "FHIR subscription"),
    ("results by", lambda s: ", ".join(s.results)),
    ("Tasks in the EHR", lambda s: str(s.tasks)),
    ("ORU results delivered (AA)", lambda s: _fmt(s.oru_delivered, "d")),
    ("CDS cards (patient-view)", lambda s: _fmt(s.cds_cards, "d")),
    ("Vigil resources in the EHR", lambda s: str(s.ehr_vigil_resources)),
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
        if not t.fhir_results:  # no Task in its EHR: the clinicians see ORU results and cards
            console.print(f"inbox {t.id}: none (results by {', '.join(t.profile().results)})")
            continue
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
        console.print("how results reached the clinicians:")
        for row in rows:
            console.print(f"  {row.delivery_line()}")
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
