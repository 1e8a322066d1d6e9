"""Benchmark: the rules engine vs the bare medspaCy pipeline, same notes, same run.

Notes: the realistic notes of ``tests/data/realistic`` (800-9,000 characters, about 3 KB median;
only their text is used). Baseline (``bare``): ``nlp(text)`` with the same medspaCy components and
rules (tokenizer, line boundaries, sentencizer, TargetMatcher, ConText, Sectionizer) and none of
the engine's own work (misspelling matching, note layout, assertion, attribution, grades). Measured modes: ``rules`` is ``RulesEngine.extract(text)`` in-process
(assertion, attribution, grades, evidence quotes). Further modes (e.g. through the gRPC
service) are added to ``MODES``: a name and a factory returning a ``measure(notes) -> None``
callable; each is timed over the same notes and reported as a ratio to the baseline.

    python -m bench.extraction [ROUNDS]
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Callable

REALISTIC = Path(__file__).resolve().parents[1] / "tests" / "data" / "realistic"
NOTE_FILES = (REALISTIC / "tune.jsonl", REALISTIC / "holdout.jsonl")
DEFAULT_ROUNDS = 3
#: The engine's speed budget: milliseconds per 3 KB of note.
BUDGET_MS_PER_3KB = 25.0


def load_notes() -> list[str]:
    return [json.loads(line)["text"] for path in NOTE_FILES for line in path.read_text().splitlines() if line.strip()]


def _bare() -> Callable[[list[str]], None]:
    from services.inference.rules.pipeline import build_pipeline

    nlp = build_pipeline(engine=False)

    def run(notes: list[str]) -> None:
        for text in notes:
            nlp(text)
    return run


def _rules() -> Callable[[list[str]], None]:
    from services.inference.rules.engine import RulesEngine

    engine = RulesEngine()

    def run(notes: list[str]) -> None:
        for text in notes:
            engine.extract(text)
    return run


#: name -> factory of a measured callable. ``bare`` is the baseline every ratio is against.
MODES: dict[str, Callable[[], Callable[[list[str]], None]]] = {
    "bare": _bare,
    "rules": _rules,
}


def measure(run: Callable[[list[str]], None], notes: list[str], rounds: int) -> float:
    """Best-of-``rounds`` notes per second (one warm-up pass first)."""
    run(notes)
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        run(notes)
        best = min(best, time.perf_counter() - started)
    return len(notes) / best


def main(argv: list[str]) -> None:
    rounds = int(argv[1]) if len(argv) > 1 else DEFAULT_ROUNDS
    notes = load_notes()
    chars = sum(map(len, notes))
    median = sorted(map(len, notes))[len(notes) // 2]
    print(f"{len(notes)} notes, {chars} characters (median {median}), best of {rounds} rounds")
    results = {name: measure(factory(), notes, rounds) for name, factory in MODES.items()}
    baseline = results["bare"]
    for name, rate in results.items():
        per_3kb = 1000.0 / rate * 3000.0 / (chars / len(notes))
        print(f"{name:>8}: {rate:8.1f} notes/s   {per_3kb:5.1f} ms per 3 KB   "
              f"ratio vs bare medspaCy pipeline: {rate / baseline:.3f}")
    engine = results["rules"]
    print(f"rules engine budget {BUDGET_MS_PER_3KB:.0f} ms per 3 KB: "
          f"{'met' if 1000.0 / engine * 3000.0 / (chars / len(notes)) <= BUDGET_MS_PER_3KB else 'NOT met'}")


if __name__ == "__main__":
    main(sys.argv)
