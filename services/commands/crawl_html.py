"""The crawl report's page: three PNG plots (matplotlib, Agg) and one self-contained ``index.html``.

Only counts, rates, categories, months and scores appear: no note text, no quotes, no patient.
"""
from __future__ import annotations

import html
from datetime import datetime
from pathlib import Path


def _figure(title: str):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    ax.set_title(title, fontsize=10)
    return plt, fig, ax


def _save(plt, fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def _bins(times: list[datetime], bins: int = 30) -> tuple[list[datetime], list[float]]:
    """Events per second in ``bins`` equal intervals between the first and the last time."""
    if len(times) < 2:
        return [], []
    t0, t1 = min(times), max(times)
    span = max((t1 - t0).total_seconds(), 1e-3)
    width = span / bins
    counts = [0] * bins
    for t in times:
        counts[min(bins - 1, int((t - t0).total_seconds() / width))] += 1
    from datetime import timedelta
    return [t0 + timedelta(seconds=width * (i + 0.5)) for i in range(bins)], [c / width for c in counts]


def rate_plot(report: dict, path: Path) -> str:
    plt, fig, ax = _figure("Rate over time: notes stored (ingest) and decisions recorded (triage, batch lane)")
    progress = [(datetime.fromisoformat(at), seen) for at, seen in report["progress"]]
    if len(progress) >= 2:
        xs, ys = [], []
        for (a, sa), (b, sb) in zip(progress, progress[1:]):
            dt = (b - a).total_seconds()
            if dt > 0:
                xs.append(b)
                ys.append((sb - sa) / dt)
        ax.plot(xs, ys, "-", label="notes stored / s")
    x, y = _bins([datetime.fromisoformat(t) for t in report["decided_at"]])
    if x:
        ax.plot(x, y, "-", label="decisions / s")
    if not ax.lines:
        ax.text(0.5, 0.5, "not enough data", ha="center", transform=ax.transAxes)
    ax.set_ylabel("per second")
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    return _save(plt, fig, path)


def month_plot(report: dict, path: Path) -> str:
    plt, fig, ax = _figure("Findings (alert decisions) per category per month of the note")
    months = list(report["per_month"])
    categories = sorted({c for counts in report["per_month"].values() for c in counts})
    bottom = [0] * len(months)
    for category in categories:
        values = [report["per_month"][m].get(category, 0) for m in months]
        ax.bar(months, values, bottom=bottom, label=category)
        bottom = [b + v for b, v in zip(bottom, values)]
    if not months:
        ax.text(0.5, 0.5, "no alert decisions", ha="center", transform=ax.transAxes)
    else:
        ax.legend(fontsize=7, ncol=2)
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    ax.set_ylabel("decisions")
    return _save(plt, fig, path)


def gate_plot(report: dict, path: Path) -> str:
    plt, fig, ax = _figure("The gate: micro scores with 95% intervals against the thresholds")
    gold = report.get("gold")
    if gold is None:
        ax.text(0.5, 0.5, "no labelled cohort given (--gold)", ha="center", transform=ax.transAxes)
        return _save(plt, fig, path)
    names = ["precision", "recall", "f1"]
    values = [gold["micro"][n] for n in names]
    lows = [v - gold["micro"]["ci95"][n][0] for n, v in zip(names, values)]
    highs = [gold["micro"]["ci95"][n][1] - v for n, v in zip(names, values)]
    ax.bar(names, values, yerr=[lows, highs], capsize=6, color=["#4c72b0", "#8c8c8c", "#55a868"])
    gates = gold["gates"]
    ax.axhline(gates["min_precision"], color="#4c72b0", ls="--", lw=1, label=f"min precision {gates['min_precision']}")
    ax.axhline(gates["min_f1"], color="#55a868", ls=":", lw=1, label=f"min F1 {gates['min_f1']}")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def summary(report: dict) -> str:
    run = report["run"]
    lines = [f"run {run['name']} of {report['tenant']} ({run['source_kind']}:{run['source_name']}, {run['state']}): "
             f"{run['seen']} seen, {run['stored']} stored, {run['published']} published, {run['skipped']} skipped",
             f"decisions: {report['decisions']['total']} ({', '.join(f'{k} {v}' for k, v in report['decisions']['by_kind'].items()) or 'none'}); "
             f"written to the EHR: {report['decisions']['written']}"]
    gold = report.get("gold")
    if gold is not None:
        m = gold["micro"]
        lines.append(f"cohort: {gold['n_notes']} notes scored, {gold['n_missing']} not in the run; "
                     f"tp {gold['tp']} fp {gold['fp']} fn {gold['fn']}")
        for name in ("precision", "recall", "f1"):
            lo, hi = m["ci95"][name]
            lines.append(f"  {name:9s} {m[name]:.3f}  (95% CI {lo:.3f}-{hi:.3f})")
        lines.append(f"gate: {'PASSED' if report['gate']['passed'] else 'FAILED'}")
        for c in report["gate"]["checks"]:
            lines.append(f"  [{'ok' if c['passed'] else 'FAIL'}] {c['name']}: {_pct(c['value'])} "
                         f"(threshold {c['threshold']}) {c['detail']}")
    return "\n".join(lines)


def write(report: dict, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    plots = [rate_plot(report, folder / "rate.png"), month_plot(report, folder / "per-month.png"),
             gate_plot(report, folder / "gate.png")]
    esc = html.escape
    rows = ""
    gold = report.get("gold")
    if gold is not None:
        rows = "".join(
            f"<tr><td>{esc(c)}</td><td>{e['support']}</td><td>{e['tp']}</td><td>{e['fp']}</td><td>{e['fn']}</td>"
            f"<td>{_pct(e['precision'])}</td><td>{_pct(e['recall'])}</td><td>{_pct(e['f1'])}</td></tr>"
            for c, e in gold["per_category"].items() if e["support"] or e["fp"])
        rows = ("<h2>Per category</h2><table><tr><th>category</th><th>support</th><th>tp</th><th>fp</th>"
                "<th>fn</th><th>precision</th><th>recall</th><th>F1</th></tr>" + rows + "</table>")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Crawl report: {esc(report['run']['name'])}</title>
<style>body{{font-family:sans-serif;max-width:60rem;margin:2rem auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.2rem .5rem;text-align:right}}pre{{background:#f6f6f6;padding:1rem}}</style>
</head><body>
<h1>Silent retrospective run {esc(report['run']['name'])} ({esc(report['tenant'])})</h1>
<pre>{esc(summary(report))}</pre>
{rows}
{''.join(f'<p><img src="{esc(p)}" alt="{esc(p)}"></p>' for p in plots)}
</body></html>
"""
    path = folder / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
