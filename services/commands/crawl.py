"""`vigil crawl report --tenant T --run N [--gold FILE.jsonl]`: a silent retrospective run against a
chart review.

The run's decisions are read from the decision ledger (``run = N``; triage's batch lane records
them), its notes and their times from ingest's run records and document store, and, given a
labelled cohort in the gold-set format (``{id, text, labels}``; ``id`` = the note's source
identifier value), each note of the cohort that the run stored is scored per (note, category):
a category is predicted when the run has an alert decision for it (``urgent-task`` /
``routine-task``; the review lane is not an alert), exactly as `vigil eval` counts findings at or
above the alert confidence. Precision, recall and F1 come with the same seeded bootstrap 95%
intervals as `vigil eval` (``services.inference.evaluation.summarise``), and the gate is the one
`vigil gate` applies to the gold set (``services.monitor.gates.score_checks``: F1 and precision
on the lower bound, ``VIGIL_EVAL_MIN_F1`` / ``VIGIL_EVAL_MIN_PRECISION``). Cohort notes the run
did not store are listed as missing and left out of the scores.

Writes ``index.html`` with three plots (rate over time, findings per category per month, the
gate) into ``--out`` (default ``artifacts/crawl/<tenant>/<run>``). Exit 0, 1 when the gate fails,
2 on bad input (unknown run, unreadable gold file, no cohort note in the run).
"""
from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterable, Sequence

import typer

from services.core.config import ConfigError, Settings
from services.core.errors import VigilError
from services.core.tenancy import TenantError, check_tenant_id

app = typer.Typer(help="Silent retrospective runs: compare a batch run's decisions with a chart review.",
                  no_args_is_help=True)

EXIT_GATE_FAILED = 1
EXIT_BAD_INPUT = 2
#: Decision kinds that are alerts (a clinician would be told); ``none`` / review tasks are not.
ALERT_KINDS = ("urgent-task", "routine-task")
DEFAULT_OUT = Path("artifacts/crawl")


class CrawlReportError(ValueError):
    pass


@dataclass(frozen=True)
class Predicted:
    """What ``score_note`` reads of a finding: its category."""
    category: str


def predictions(decisions: Iterable[dict], doc_ids: dict[str, str]) -> dict[str, set[str]]:
    """Source identifier value -> categories the run alerted on, for the run's documents."""
    out: dict[str, set[str]] = {}
    for d in decisions:
        value = doc_ids.get(d.get("document_id") or "")
        if value is not None and d["kind"] in ALERT_KINDS and not d.get("suppressed"):
            out.setdefault(value, set()).add(d["category"])
    return out


def score_run(gold, predicted: dict[str, set[str]], covered: set[str], *, gates, resamples: int,
              seed: int | None = None) -> dict:
    """The scoring report of the cohort notes the run covered (``vigil eval``'s shape) + ``missing``."""
    from services.inference.evaluation import BOOTSTRAP_SEED, score_note, summarise

    cohort = [g for g in gold if g.id in covered]
    missing = sorted(g.id for g in gold if g.id not in covered)
    if not cohort:
        raise CrawlReportError(f"none of the {len(gold)} cohort notes is in the run (ids must be the notes' "
                               "source identifier values)")
    scores = [score_note(g, [Predicted(c) for c in sorted(predicted.get(g.id, ()))]) for g in cohort]
    report = summarise(scores, gates=gates, resamples=resamples, seed=BOOTSTRAP_SEED if seed is None else seed)
    report.update(missing=missing, n_missing=len(missing))
    return report


def per_month(decisions: Iterable[dict], note_times: dict[str, datetime | None]) -> dict[str, dict[str, int]]:
    """Month of the note (``YYYY-MM``, ``unknown`` without a time) -> category -> alert decisions."""
    out: dict[str, Counter] = {}
    for d in decisions:
        if d["kind"] not in ALERT_KINDS or d.get("document_id") not in note_times:
            continue
        when = note_times[d["document_id"]]
        out.setdefault(when.strftime("%Y-%m") if when else "unknown", Counter())[d["category"]] += 1
    return {month: dict(counts) for month, counts in sorted(out.items())}


async def collect(settings: Settings, tenant: str, run: str) -> dict:
    """The run row, its progress, its documents and its decisions (quotes never revealed)."""
    from services.triage import ledger
    from services.core.db import create_pool
    from services.core.secrets import SecretSettings
    from services.core.tenantdb import TenantPools
    from services.ingest.batch import job
    from services.ingest.store import schema

    admin = await create_pool(settings, min_size=1, max_size=1)
    try:
        await ledger.ensure_schema(admin)
        await schema.migrate(admin)
    finally:
        await admin.close()
    pools = TenantPools(settings, SecretSettings.from_env())
    try:
        row = await job.get(pools, tenant, run)
        if row is None:
            raise CrawlReportError(f"tenant {tenant} has no run {run!r} (see `vigil backfill status`)")
        return {"job": row, "progress": await job.progress(pools, tenant, run),
                "documents": await job.documents_of(pools, tenant, run),
                "decisions": await ledger.DecisionLedger(pools).by_run(tenant, run)}
    finally:
        await pools.close()


def build_report(data: dict, gold: Sequence | None, *, gates, resamples: int) -> dict:
    from services.monitor.gates import score_checks

    documents, decisions = data["documents"], data["decisions"]
    doc_ids = {d.id: d.identifier_value for d in documents}
    note_times = {d.id: d.note_time for d in documents}
    kinds = Counter(d["kind"] for d in decisions)
    report = {"tenant": None, "run": data["job"].as_dict(), "documents": len(documents),
              "decisions": {"total": len(decisions), "by_kind": dict(sorted(kinds.items())),
                            "alerts_by_category": dict(sorted(Counter(
                                d["category"] for d in decisions if d["kind"] in ALERT_KINDS).items())),
                            "modes": sorted({d["mode"] for d in decisions}),
                            "written": sum(1 for d in decisions if d["write"] or d["written_refs"])},
              "per_month": per_month(decisions, note_times),
              "progress": [(at.isoformat(), seen) for at, seen in data["progress"]],
              "decided_at": [d["time"].isoformat() for d in decisions]}
    if gold is not None:
        scored = score_run(gold, predictions(decisions, doc_ids), set(doc_ids.values()), gates=gates,
                           resamples=resamples)
        checks = score_checks(scored, f"run {data['job'].name}")
        report["gold"] = scored
        report["gate"] = {"passed": all(c.passed for c in checks),
                          "checks": [c.__dict__ for c in checks]}
    return report


@app.command("report")
def report_command(tenant: str = typer.Option(..., "--tenant", help="Tenant id."),
                   run: str = typer.Option(..., "--run", help="The batch run's name."),
                   gold: Path = typer.Option(None, "--gold", help="Labelled cohort (gold-set JSON Lines)."),
                   out: Path = typer.Option(None, "--out", help="Folder for index.html and the plots."),
                   as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
                   resamples: int = typer.Option(1000, "--resamples", min=100, help="Bootstrap resamples.")) -> None:
    """Summarise a silent batch run and, with --gold, score it against the chart review with the gate."""
    from services.commands import crawl_html
    from services.inference.evaluation import Gates, GoldFileError, load_gold

    try:
        check_tenant_id(tenant)
        settings = Settings.from_env()
        gates = Gates.from_env()
        cohort = load_gold(gold) if gold is not None else None
    except (ConfigError, TenantError, GoldFileError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT)
    try:
        data = asyncio.run(collect(settings, tenant, run))
        result = build_report(data, cohort, gates=gates, resamples=resamples)
    except CrawlReportError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT)
    except (VigilError, OSError) as exc:
        typer.echo(f"error: cannot read run {run!r} of {tenant} ({type(exc).__name__})", err=True)
        raise typer.Exit(1)
    result["tenant"] = tenant
    folder = out or DEFAULT_OUT / tenant / run
    page = crawl_html.write(result, folder)
    result["html"] = str(page)
    if as_json:
        typer.echo(json.dumps(result, sort_keys=True, default=str))
    else:
        typer.echo(crawl_html.summary(result))
        typer.echo(f"wrote {page}")
    if "gate" in result and not result["gate"]["passed"]:
        raise typer.Exit(EXIT_GATE_FAILED)
