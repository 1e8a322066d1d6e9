"""What an engine returns for one note, before the service's final evidence check."""
from __future__ import annotations

from dataclasses import dataclass, field

from services.core.errors import RetryableError
from services.inference.findings import Finding


@dataclass(frozen=True)
class EngineOutput:
    findings: list[Finding]
    engine: str
    engine_version: str
    prompt_hash: str = ""
    review_required: bool = False
    dropped: int = 0
    notes: tuple[str, ...] = field(default=())   # short machine codes, e.g. "budget_fallback" (no PHI)


class BudgetExhausted(RetryableError):
    """The tenant's daily LLM budget is spent; ``retry_after`` is the time to the next UTC day."""

    code = "budget_exhausted"
