"""Benchmark: the rules engine vs the bare medspaCy pipeline, same notes, same run.

Baseline (``bare``): ``nlp(text)`` with the very same components and rules (tokenizer, line
boundaries, sentencizer, TargetMatcher, ConText, Sectionizer) and none of the engine's
post-processing. Measured modes: ``rules`` is ``RulesEngine.extract(text)`` in-process
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

GOLD = Path(__file__).resolve().parents[1] / "tests" / "data" / "gold_dev.jsonl"
DEFAULT_ROUNDS = 5


def load_notes() -> list[str]:
    return [json.loads(line)["text"] for line in GOLD.read_text().splitlines() if line.strip()]


def _bare() -> Callable[[list[str]], None]:
    from services.inference.rules.pipeline import build_pipeline

    nlp = build_pipeline()

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
    print(f"{len(notes)} notes, {chars} characters, best of {rounds} rounds")
    results = {name: measure(factory(), notes, rounds) for name, factory in MODES.items()}
    baseline = results["bare"]
    for name, rate in results.items():
        print(f"{name:>8}: {rate:8.1f} notes/s   ratio vs bare medspaCy pipeline: {rate / baseline:.3f}")


if __name__ == "__main__":
    main(sys.argv)
