"""Recall and false-positive rate of the urgent-symptom detector on labelled message sets
(``tests/data/conversations/urgent_*.jsonl``: one message a line, ``{"id", "language", "urgent",
"why", "text"}``), for tuning and for scoring a new set by path:

    python -m tests.unit.scheduling.urgent_sets [--misses] FILE.jsonl ...     (or: make test-urgent)

A message is handed to staff when it holds an urgent symptom or a request for a person ("can a nurse call
me back"), as the agent does. Recall counts urgent messages handed to staff; the false-positive rate counts
non-urgent ones it hands over (a missed emergency is far worse than an extra call from a nurse)."""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from services.scheduling import intents

DATA = Path(__file__).resolve().parents[2] / "data" / "conversations"
SETS = {"urgent_tune": DATA / "urgent_tune.jsonl", "urgent_holdout": DATA / "urgent_holdout.jsonl",
        "urgent3": DATA / "urgent3.jsonl"}


@dataclass
class Score:
    name: str
    urgent: int = 0
    found: int = 0
    ordinary: int = 0
    false_positives: int = 0
    by_language: dict = field(default_factory=dict)        # language -> [found, urgent]
    misses: list[str] = field(default_factory=list)        # ids (never the text: it may read as PHI)
    extra: list[str] = field(default_factory=list)

    @property
    def recall(self) -> float:
        return self.found / self.urgent if self.urgent else 1.0

    @property
    def fpr(self) -> float:
        return self.false_positives / self.ordinary if self.ordinary else 0.0

    def render(self) -> str:
        languages = ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in sorted(self.by_language.items()))
        return (f"{self.name}: recall {self.recall:.3f} ({self.found}/{self.urgent}; {languages}), "
                f"false-positive rate {self.fpr:.3f} ({self.false_positives}/{self.ordinary})")


def score(path: Path | str) -> Score:
    path = Path(path)
    out = Score(path.stem)
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        if not isinstance(row.get("urgent"), bool) or not isinstance(row.get("text"), str):
            raise ValueError(f"{path}:{number}: a row needs a boolean 'urgent' and a 'text'")
        got = intents.urgent(row["text"]) or intents.person_request(row["text"])
        ident = str(row.get("id", number))
        if row["urgent"]:
            out.urgent += 1
            out.found += got
            per = out.by_language.setdefault(row.get("language", "?"), [0, 0])
            per[0], per[1] = per[0] + got, per[1] + 1
            if not got:
                out.misses.append(ident)
        else:
            out.ordinary += 1
            out.false_positives += got
            if got:
                out.extra.append(ident)
    return out


def main(argv: list[str]) -> int:
    show = "--misses" in argv
    paths = [a for a in argv if a != "--misses"] or [str(p) for p in SETS.values()]
    for path in paths:
        result = score(SETS.get(path, path))
        print(result.render())
        if show:
            print(f"  missed: {' '.join(result.misses) or '-'}\n  false positives: {' '.join(result.extra) or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
