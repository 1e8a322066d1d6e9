"""Engines the `vigil eval` command can score, by name: one explicit table.

A factory takes no arguments and returns an object with ``name``, ``version`` and a synchronous
``extract(text) -> list[Finding]``. Engines that need a tenant, an endpoint or the network are
built by their own factory from the environment.
"""
from __future__ import annotations

from typing import Callable, Protocol, Sequence

from services.inference.findings import Finding


class EvalEngine(Protocol):
    name: str
    version: str

    def extract(self, text: str) -> Sequence[Finding]: ...


class UnknownEngine(LookupError):
    """No engine of that name is registered."""


def _rules() -> EvalEngine:
    from services.inference.rules.engine import RulesEngine

    return RulesEngine()


def _routed(route: str) -> Callable[[], EvalEngine]:
    def factory() -> EvalEngine:
        from services.inference.scoring import RoutedScorer

        return RoutedScorer(route)
    return factory


#: name -> factory. Add an engine here and nowhere else. ``llm`` and ``hybrid`` evaluate with the
#: LLM settings of the registry tenant named by VIGIL_EVAL_TENANT (see services/inference/scoring.py).
ENGINES: dict[str, Callable[[], EvalEngine]] = {
    "rules": _rules,
    "llm": _routed("llm"),
    "hybrid": _routed("hybrid"),
}

#: Engines the service knows about that may not be scorable offline yet.
KNOWN_ENGINE_NAMES = ("rules", "llm", "hybrid")


def build(name: str) -> EvalEngine:
    factory = ENGINES.get(name)
    if factory is None:
        if name in KNOWN_ENGINE_NAMES:
            raise UnknownEngine(f"engine {name!r} has no evaluation factory registered in "
                                f"services/inference/engines.py ENGINES (available: {', '.join(ENGINES)})")
        raise UnknownEngine(f"unknown engine {name!r} (available: {', '.join(ENGINES)})")
    return factory()
