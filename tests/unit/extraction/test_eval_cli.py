"""`vigil eval` exit codes, run as a subprocess."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
DEV = ROOT / "tests" / "data" / "gold_dev.jsonl"


def vigil_eval(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "services.cli", "eval", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=240)


def test_dev_set_passes_its_gates_with_json_report():
    result = vigil_eval("--gold", str(DEV), "--engine", "rules", "--json", "--resamples", "200")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for key in ("micro", "per_category", "grade_accuracy", "evidence_exact_rate", "n_notes", "gates"):
        assert key in report
    assert set(report["micro"]) >= {"precision", "recall", "f1"}
    assert report["n_notes"] >= 90 and report["gates"]["passed"] is True
    assert report["engine"]["version"].startswith("rules-")


def test_gate_failure_exits_1(tmp_path):
    gold = tmp_path / "wrong.jsonl"
    rows = [{"id": f"w{i}", "text": "On pembrolizumab. Immune-mediated colitis, grade 2.", "labels": [{"category": "hepatitis", "grade": None}]}
            for i in range(5)]
    gold.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = vigil_eval("--gold", str(gold), "--resamples", "100")
    assert result.returncode == 1
    assert "FAILED" in result.stdout


def test_bad_file_exits_2_naming_the_line(tmp_path):
    gold = tmp_path / "bad.jsonl"
    gold.write_text('{"id": "a", "text": "x", "labels": []}\n{"id": "b", "text": 3, "labels": []}\n')
    result = vigil_eval("--gold", str(gold))
    assert result.returncode == 2
    assert "bad.jsonl:2" in result.stderr and "'text' must be a string" in result.stderr


def test_unknown_engine_exits_2():
    result = vigil_eval("--gold", str(DEV), "--engine", "oracle")
    assert result.returncode == 2 and "unknown engine 'oracle'" in result.stderr


def test_errors_and_breakdowns_in_json_and_table(tmp_path):
    gold = tmp_path / "small.jsonl"
    rows = [
        {"id": "s1", "note_type": "ED note", "tags": ["plain_positive"],
         "text": "On pembrolizumab. Assessment: immune-mediated colitis, grade 2.",
         "labels": [{"category": "colitis", "grade": 3}]},
        {"id": "s2", "note_type": "portal message", "tags": ["family"],
         "text": "On nivolumab. His mother has hypothyroidism. He feels well.",
         "labels": [{"category": "thyroiditis", "grade": None}]},
    ]
    gold.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = vigil_eval("--gold", str(gold), "--json", "--errors", "--resamples", "100")
    report = json.loads(result.stdout)
    assert set(report["by_tag"]) == {"plain_positive", "family"}
    assert report["by_note_type"]["patient portal message"]["fn"] == 1
    errors = {(e["id"], e["kind"]): e for e in report["errors"]}
    assert errors[("s1", "grade")]["observed"]["grade"] == 2 and errors[("s1", "grade")]["rule"] == "qualified"
    assert errors[("s2", "fn")]["rule"] == "family"
    assert errors[("s2", "fn")]["mentions"][0]["text"] == "hypothyroidism"
    table = vigil_eval("--gold", str(gold), "--errors", "--resamples", "100")
    assert "by trap tag" in table.stdout and "s2  thyroiditis  fn" in table.stdout and "rule=family" in table.stdout
