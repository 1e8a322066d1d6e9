"""Prometheus metrics of the inference service. Labels are tenant ids and engine names only (no PHI)."""
from __future__ import annotations

from prometheus_client import Counter

FINDINGS_DROPPED = Counter("vigil_inference_findings_dropped_total",
                           "Findings dropped because their quote is not verbatim in the note",
                           ["tenant", "engine"])
REVIEW_REQUIRED = Counter("vigil_inference_review_required_total", "Notes sent to human review",
                          ["tenant", "engine"])
EXTRACTIONS = Counter("vigil_inference_extractions_total", "Extract calls answered", ["tenant", "engine"])
LLM_TOKENS = Counter("vigil_inference_llm_tokens_total", "Tokens used by LLM calls", ["tenant", "kind"])
LLM_COST = Counter("vigil_inference_llm_cost_usd_total", "Estimated LLM cost in USD", ["tenant"])
LLM_CACHE_HITS = Counter("vigil_inference_llm_cache_hits_total", "LLM responses served from the cache", ["tenant"])
LLM_INVALID_OUTPUT = Counter("vigil_inference_llm_invalid_output_total",
                             "Model replies invalid after the one repair attempt", ["tenant"])
BUDGET_EXHAUSTED = Counter("vigil_inference_llm_budget_exhausted_total", "Calls refused by the daily budget",
                           ["tenant", "action"])
