"""The rules engine's decisions on every labelled note, written down and compared.

A speed change to ``services/inference/rules`` must not change one decision. This writes, for
every note of every JSON Lines set under ``tests/data`` that has a ``text`` (the gold sets, the
realistic sets, the patient-message sets), the engine's findings and the decision on every
category mention (``RulesEngine.explain``), ``candidate_mentions``, and the pipeline's spans
(label, tokens, sentence, ConText modifiers with their scopes); then compares two such
snapshots note by note.

    python -m bench.rules_identity write BEFORE.json       (on the old code)
    python -m bench.rules_identity write AFTER.json        (on the new code)
    python -m bench.rules_identity compare BEFORE.json AFTER.json

``compare`` prints every note whose output differs and exits 1 when there is one.
The snapshot holds note ids and offsets, and the quotes (test data, no PHI).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"


def labelled_notes() -> list[tuple[str, str]]:
    """(set/id, text) of every note with a text, in file and line order."""
    notes = []
    for path in sorted(DATA.rglob("*.jsonl")):
        for line_no, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if isinstance(row.get("text"), str):
                notes.append((f"{path.relative_to(DATA)}:{row.get('id', line_no)}", row["text"]))
    return notes


def snapshot() -> dict:
    from services.inference.rules.engine import RulesEngine
    from services.inference.rules.pipeline import parse

    engine = RulesEngine()
    out = {}
    started = time.process_time()
    for key, text in labelled_notes():
        findings, decisions = engine.explain(text)
        out[key] = {"findings": [f.to_dict() for f in findings], "decisions": [d.to_dict() for d in decisions],
                    "candidate": engine.candidate_mentions(text)}
    cpu_s = time.process_time() - started
    for key, text in labelled_notes():
        if text.strip():  # the pipeline's own output: every span, its sentence and its ConText modifiers
            doc = parse(text)
            out[key]["spans"] = [[e.label_, e.start, e.end, e.sent.start, e.sent.end,
                                  [[m.category, *m.modifier_span, *m.scope_span] for m in e._.modifiers]]
                                 for e in doc.ents]
    return {"version": engine.version, "cpu_s": round(cpu_s, 2), "notes": out}


def compare(before: dict, after: dict) -> int:
    differences = 0
    for key in sorted(set(before["notes"]) | set(after["notes"])):
        old, new = before["notes"].get(key), after["notes"].get(key)
        if old != new:
            differences += 1
            print(f"DIFFERS {key}:\n  before {json.dumps(old)[:600]}\n  after  {json.dumps(new)[:600]}")
    total = len(after["notes"])
    findings = sum(len(v["findings"]) for v in after["notes"].values())
    decisions = sum(len(v["decisions"]) for v in after["notes"].values())
    print(f"{differences} differences over {total} notes ({findings} findings, {decisions} mention decisions); "
          f"engine {before['version']} -> {after['version']}; CPU {before['cpu_s']} s -> {after['cpu_s']} s")
    return 1 if differences or set(before["notes"]) != set(after["notes"]) else 0


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[1] == "write":
        Path(argv[2]).write_text(json.dumps(snapshot(), indent=1, sort_keys=True))
        return 0
    if len(argv) == 4 and argv[1] == "compare":
        return compare(json.loads(Path(argv[2]).read_text()), json.loads(Path(argv[3]).read_text()))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
