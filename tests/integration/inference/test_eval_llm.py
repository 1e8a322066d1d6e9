"""`vigil eval --engine llm|hybrid` runs the service's route for a registry tenant against its endpoint."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from services.core.tenancy import Registry, Tenant
from tests.fixtures.fake_llm import findings_reply

from tests.integration.inference.conftest import API_KEY_ENV

GOLD = [
    {"id": "a", "text": "On pembrolizumab. Assessment: grade 2 immune-mediated colitis.\n",
     "labels": [{"category": "colitis", "grade": 2}]},
    {"id": "b", "text": "On nivolumab. New immune-related hepatitis, ALT 310.\n",
     "labels": [{"category": "hepatitis", "grade": None}]},
    {"id": "c", "text": "Routine visit. Tolerating treatment. Return in 3 weeks.\n", "labels": []},
]
ANSWERS = {"grade 2 immune-mediated colitis": ("colitis", 2), "immune-related hepatitis": ("hepatitis", None)}


def answer(body):
    note = body["messages"][-1]["content"]
    found = [{"category": category, "quote": quote, "attribution": "immunotherapy", "grade": grade,
              "grade_evidence": quote if grade else None, "confidence": 0.9}
             for quote, (category, grade) in ANSWERS.items() if quote in note]
    return findings_reply(found)


@pytest.mark.parametrize("route, calls", [("llm", 3), ("hybrid", 2)])
def test_eval_scores_the_llm_routes(tmp_path, fake_llm, tenant_id, route, calls):
    from services.cli import app

    gold = tmp_path / "gold.jsonl"
    gold.write_text("".join(json.dumps(n) + "\n" for n in GOLD))
    registry = Registry(tmp_path / "tenants.toml", [Tenant(id=tenant_id, settings={
        "engine": route, "llm_base_url": fake_llm.base_url, "llm_model": "fake-model",
        "llm_api_key_env": API_KEY_ENV})])
    registry.save()
    fake_llm.script(*(answer for _ in range(calls)))
    result = CliRunner().invoke(app, ["eval", "--gold", str(gold), "--engine", route, "--json", "--resamples", "200"],
                                env={"VIGIL_TENANTS_FILE": str(registry.path), "VIGIL_EVAL_TENANT": tenant_id,
                                     API_KEY_ENV: "sk-eval", "VIGIL_ENV": "test"})
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["micro"]["f1"] == 1.0 and report["n_notes"] == 3
    assert report["engine"]["name"] == route and "fake-model" in report["engine"]["version"]
    assert len(fake_llm.requests) == calls          # hybrid skipped the note without candidate mentions


def test_eval_llm_needs_a_tenant(tmp_path):
    from services.cli import app

    gold = tmp_path / "gold.jsonl"
    gold.write_text(json.dumps(GOLD[0]) + "\n")
    result = CliRunner().invoke(app, ["eval", "--gold", str(gold), "--engine", "llm"], env={"VIGIL_EVAL_TENANT": ""})
    assert result.exit_code == 2 and "VIGIL_EVAL_TENANT" in result.output
