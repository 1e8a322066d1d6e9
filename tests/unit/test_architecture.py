"""The dependency rules of the house, checked on the source: services -> core only; core imports no
service; no service imports another (they talk over Kafka or gRPC). The command layer
(``services/cli.py``, ``services/commands/``) wires services together and is exempt.

``KNOWN`` lists the imports that still break the rule, each with its reason; the test fails on a
new one and on a listed one that is gone, so the list only ever shrinks."""
from __future__ import annotations

import ast
from pathlib import Path

SERVICES = Path(__file__).resolve().parents[2] / "services"
COMMAND_LAYER = ("commands",)
#: (importing file, imported service) -> why it is still there.
KNOWN: dict[tuple[str, str], str] = {}


def imports_of(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def crossings() -> set[tuple[str, str]]:
    found = set()
    for path in SERVICES.rglob("*.py"):
        parts = path.relative_to(SERVICES).parts
        if len(parts) < 2 or parts[0] in COMMAND_LAYER:
            continue
        owner = parts[0]
        for module in imports_of(path):
            names = module.split(".")
            if names[0] != "services" or len(names) < 2:
                continue
            target = names[1]
            if target == owner or (target == "core" and owner != "core"):
                continue
            found.add((f"services/{'/'.join(parts)}", target))
    return found


def test_no_service_imports_another_and_core_imports_none():
    found = crossings()
    new = sorted(found - set(KNOWN))
    gone = sorted(set(KNOWN) - found)
    assert not new, f"imports across services (talk over Kafka or gRPC instead): {new}"
    assert not gone, f"no longer imported, remove from KNOWN: {gone}"


def test_the_check_sees_a_crossing(tmp_path, monkeypatch):
    fake = tmp_path / "services"
    (fake / "triage").mkdir(parents=True)
    (fake / "core").mkdir()
    (fake / "triage" / "x.py").write_text("from services.writeback import writer\nimport services.core.events\n")
    (fake / "core" / "y.py").write_text("import services.ingest.app\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["SERVICES"]), "SERVICES", fake)
    assert crossings() == {("services/triage/x.py", "writeback"), ("services/core/y.py", "ingest")}
