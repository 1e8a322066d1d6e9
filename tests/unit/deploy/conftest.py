"""Fixtures for the deployment tests: rendered overlays and CRD schemas, loaded once."""
from __future__ import annotations

import json

import pytest
from tests.unit.deploy.k8s_docs import K8S, OVERLAYS, load_renderer

render_module = load_renderer()


@pytest.fixture(scope="session")
def renderer():
    return render_module


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict]]:
    """overlay name -> rendered documents."""
    return {name: render_module.render(K8S / "overlays" / name) for name in OVERLAYS}


@pytest.fixture(scope="session")
def crd_schemas() -> dict[tuple[str, str], dict]:
    schemas = {}
    for path in sorted((K8S / "schemas").glob("*.json")):
        schema = json.loads(path.read_text(encoding="utf-8"))
        props = schema["properties"]
        schemas[(props["apiVersion"]["const"], props["kind"]["const"])] = schema
    return schemas
