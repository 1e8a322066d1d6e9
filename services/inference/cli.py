"""`vigil eval`: score an engine on a gold set and enforce the quality gates."""
from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(help="Score an extraction engine on a gold set (JSON Lines).", no_args_is_help=True,
                  invoke_without_command=True, pretty_exceptions_enable=False)

EXIT_GATE_FAILED = 1
EXIT_BAD_INPUT = 2


@app.callback()
def eval_command(
    gold: Path = typer.Option(..., "--gold", help="Gold set: one JSON object per line {id, text, labels}."),
    engine: str = typer.Option("rules", "--engine", help="rules | llm | hybrid"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
    resamples: int = typer.Option(1000, "--resamples", min=100, help="Bootstrap resamples over notes."),
    errors: bool = typer.Option(False, "--errors", help="List every false positive, false negative and wrong "
                                "grade: note id, category, expected, observed, evidence and the deciding rule."),
) -> None:
    """Score ENGINE on GOLD: precision/recall/F1 with bootstrap 95% intervals, grade accuracy,
    evidence exactness, review-lane counts, breakdowns by trap tag, note type and note length.
    Exit 1 when a gate fails, 2 on a bad gold file or engine."""
    from services.core.config import ConfigError
    from services.inference import engines
    from services.inference.evaluation import Gates, GoldFileError, evaluate, load_gold

    try:
        notes = load_gold(gold)
        gates = Gates.from_env()
        scorer = engines.build(engine)
    except (GoldFileError, ConfigError, engines.UnknownEngine) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT)
    report = evaluate(notes, scorer.extract, gates=gates, resamples=resamples, explain=_explainer(scorer),
                      with_errors=errors, prefilter=getattr(scorer, "prefilter", None))
    report["engine"] = {"name": engine, "version": scorer.version}
    report["gold"] = str(gold)
    if as_json:
        typer.echo(json.dumps(report, sort_keys=True))
    else:
        _print_table(report)
    if not report["gates"]["passed"]:
        raise typer.Exit(EXIT_GATE_FAILED)


def _explainer(scorer):
    """``explain`` for engines that can say how each mention was decided (the rules engine)."""
    explain = getattr(scorer, "explain", None)
    if explain is None:
        return None

    def run(text: str):
        findings, decisions = explain(text)
        return findings, [d.to_dict() for d in decisions]
    return run


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _ci(entry: dict, key: str) -> str:
    lo, hi = entry["ci95"][key]
    return f"{entry[key]:.3f} [{lo:.3f}, {hi:.3f}]"


def _print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"{report['engine']['name']} ({report['engine']['version']}) on {report['n_notes']} notes")
    for column in ("category", "support", "tp", "fp", "fn", "precision [95% CI]", "recall [95% CI]", "F1 [95% CI]"):
        table.add_column(column, justify="left" if column == "category" else "right")
    for category, entry in report["per_category"].items():
        table.add_row(category, str(entry["support"]), str(entry["tp"]), str(entry["fp"]), str(entry["fn"]),
                      _ci(entry, "precision"), _ci(entry, "recall"), _ci(entry, "f1"))
    micro = report["micro"]
    table.add_row("micro", str(report["tp"] + report["fn"]), str(report["tp"]), str(report["fp"]), str(report["fn"]),
                  _ci(micro, "precision"), _ci(micro, "recall"), _ci(micro, "f1"), style="bold")
    console.print(table)
    gates = report["gates"]
    console.print(f"grade accuracy: {_fmt(report['grade_accuracy'])} (n={report['grade_n']})   "
                  f"evidence exact: {_fmt(report['evidence_exact_rate'])} (n={report['evidence_n']})")
    review = report["review"]
    console.print(f"review lane (uncertain, not alerts): {review['findings']} findings "
                  f"({review['tp']} on a gold label, {review['fp']} not)")
    for key, title in (("by_tag", "trap tag"), ("by_note_type", "note type"), ("by_length", "note length (chars)")):
        breakdown = Table(title=f"by {title}")
        for column in (title, "notes", "tp", "fp", "fn", "precision", "recall", "F1"):
            breakdown.add_column(column, justify="left" if column == title else "right")
        for name, entry in report[key].items():
            breakdown.add_row(name, str(entry["n_notes"]), str(entry["tp"]), str(entry["fp"]), str(entry["fn"]),
                              _fmt(entry["precision"]), _fmt(entry["recall"]), _fmt(entry["f1"]))
        console.print(breakdown)
    if "prefilter" in report:
        pre = report["prefilter"]
        console.print(f"hybrid prefilter (notes sent to the model): forward rate {pre['forward_rate']:.3f} "
                      f"({pre['forwarded']}/{report['n_notes']}), recall {pre['recall']:.3f} of "
                      f"{pre['positive_notes']} notes with a gold label (labels {pre['label_recall']:.3f})")
    if "errors" in report:
        _print_errors(console, report["errors"])
    verdict = "[green]PASSED[/green]" if gates["passed"] else "[red]FAILED[/red]"
    console.print(f"gates (on the 95% lower bound): F1 {gates['f1_lower']:.3f} >= {gates['min_f1']:.2f}, "
                  f"precision {gates['precision_lower']:.3f} >= {gates['min_precision']:.2f}: {verdict}")


def _state(entry: dict) -> str:
    if not entry["present"]:
        return "absent"
    return "present" if entry["grade"] is None else f"present G{entry['grade']}"


def _print_errors(console, errors: list[dict]) -> None:
    console.print(f"errors: {len(errors)}")
    for e in errors:
        console.print(f"{e['id']}  {e['category']}  {e['kind']}  expected {_state(e['expected'])}, "
                      f"observed {_state(e['observed'])}  rule={e['rule']}", markup=False, highlight=False)
        if "evidence" in e:
            console.print(f"    evidence [{e['evidence']['start']}:{e['evidence']['end']}] {e['evidence']['quote']!r}",
                          markup=False, highlight=False)
        for m in e.get("mentions", ()):
            console.print(f"    mention [{m['start']}:{m['end']}] {m['text']!r} -> {m['reason']}",
                          markup=False, highlight=False)
