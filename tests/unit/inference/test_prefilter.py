"""The hybrid prefilter: which notes reach the model, and how `vigil eval` scores it."""
from __future__ import annotations

import asyncio

from services.core.tenancy import Tenant
from services.inference.evaluation import GoldNote, evaluate
from services.inference.findings import Finding
from services.inference.prefilter import forwards
from services.inference.result import EngineOutput
from services.inference.routing import Router


def finding(confidence: float) -> Finding:
    return Finding("colitis", None, 0, 7, "Colitis", "unspecified", confidence)


def test_only_alerts_are_forwarded():
    assert forwards([finding(0.9)]) and forwards([finding(0.4), finding(0.7)])
    assert not forwards([]) and not forwards([finding(0.4)])


class Fixed:
    def __init__(self, findings, name):
        self.findings, self.name, self.calls = findings, name, 0

    async def extract(self, tenant, document_id, text):
        self.calls += 1
        return EngineOutput(list(self.findings), self.name, "v1")


def test_hybrid_sends_the_model_only_what_the_prefilter_forwards():
    tenant = Tenant(id="north", settings={})
    model = Fixed([finding(0.95)], "llm")
    unsure = Router(Fixed([finding(0.4)], "rules"), model)
    out = asyncio.run(unsure.run("hybrid", tenant, "d1", "Colitis"))
    assert model.calls == 0 and "no_candidates" in out.notes and out.findings[0].confidence == 0.4
    sure = Router(Fixed([finding(0.9)], "rules"), model)
    out = asyncio.run(sure.run("hybrid", tenant, "d2", "Colitis"))
    assert model.calls == 1 and out.findings[0].confidence == 0.95


def test_eval_reports_prefilter_recall_and_forward_rate():
    notes = [GoldNote("a", "Colitis", {"colitis": 2}), GoldNote("b", "Colitis", {"colitis": None, "hepatitis": 1}),
             GoldNote("c", "Nothing", {}), GoldNote("d", "Nothing", {})]
    sent = {"a": True, "b": False, "c": True, "d": False}
    order = iter(["a", "b", "c", "d"])  # the prefilter is asked once per note, in order
    report = evaluate(notes, lambda text: [], resamples=100, sentence_bounds=lambda text: [(0, len(text))],
                      prefilter=lambda text: sent[next(order)])
    assert report["prefilter"] == {"forwarded": 2, "forward_rate": 0.5, "positive_notes": 2, "recall": 0.5,
                                   "label_recall": 1 / 3}
