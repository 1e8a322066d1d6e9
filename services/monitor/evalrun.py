"""Run `vigil eval` in a child process and read its JSON report.

The monitor does not import the inference service (services talk over processes, Kafka or
gRPC): the gold-set score is exactly what an operator gets from
``vigil eval --gold FILE --engine ENGINE --json``, with ``VIGIL_EVAL_TENANT`` naming the tenant
whose LLM settings the ``llm``/``hybrid`` engines use. Exit 0 (gates passed) and 1 (a gate
failed) both print a report; anything else is an error.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Mapping

from services.core.errors import FatalError
from services.core.tenancy import Registry, TenantError

#: Scoring 100 notes with the rules engine takes ~12 s here (spaCy load included); an LLM
#: engine calls the model once per note, so allow ten minutes before giving up.
EVAL_TIMEOUT_S = 600.0
DEFAULT_ENGINE = "rules"


class EvalFailed(FatalError):
    code = "eval_failed"


def tenant_engine(tenants_file: Path, tenant: str) -> str:
    """The tenant's live engine: the registry setting ``engine`` (default ``rules``)."""
    try:
        registry = Registry.load(tenants_file)
    except TenantError:
        return DEFAULT_ENGINE
    if tenant in registry:
        return str(registry.get(tenant).setting("engine", DEFAULT_ENGINE))
    return DEFAULT_ENGINE


async def run_eval(gold: Path, engine: str, tenant: str, *, resamples: int = 1000,
                   env: Mapping[str, str] | None = None, timeout_s: float = EVAL_TIMEOUT_S) -> dict:
    child_env = dict(os.environ if env is None else env)
    child_env["VIGIL_EVAL_TENANT"] = tenant
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", "eval", "--gold", str(gold), "--engine", engine, "--json",
        "--resamples", str(resamples), env=child_env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise EvalFailed(f"vigil eval did not finish within {timeout_s:.0f} s") from None
    if proc.returncode not in (0, 1):
        message = err.decode("utf-8", "replace").strip().splitlines()
        raise EvalFailed(f"vigil eval exited {proc.returncode}: {message[-1][:300] if message else 'no message'}")
    try:
        return json.loads(out)
    except ValueError:
        raise EvalFailed("vigil eval printed no JSON report") from None
