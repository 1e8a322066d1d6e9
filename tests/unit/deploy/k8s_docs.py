"""Helpers for the deployment tests: paths, the offline renderer, document lookups."""
from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")


def load_renderer():
    """deploy/render.py, loaded by path (deploy/ is not an installed package)."""
    spec = importlib.util.spec_from_file_location("vigil_deploy_render", ROOT / "deploy" / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tenants_of(docs: list[dict]) -> list[str]:
    """Tenant ids from the registry ConfigMap (the same TOML the services load)."""
    cm = one(docs, "ConfigMap", "vigil-tenants")
    return sorted(tomllib.loads(cm["data"]["tenants.toml"])["tenants"])


def one(docs: list[dict], kind: str, name: str) -> dict:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def of_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]
