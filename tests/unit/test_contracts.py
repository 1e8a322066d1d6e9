"""The bus contracts are declared once (``services.core.contracts``) and agree with ``schemas/``.

Fails when an event type has no schema file or a schema file has no event type, when a schema's
``$id`` names another type, and when a module under ``services/`` spells an event type or a
stream name where the contracts' constant belongs.
"""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from services.core import contracts, lanes, schemas, tenancy

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "services"
CONTRACTS_FILE = SERVICES / "core" / "contracts.py"
STREAM_NAME = re.compile(r"^[a-z][a-z0-9-]*[a-z0-9]$")
#: Calls whose argument at this position is a stream name.
STREAM_ARGUMENT = {"emit": 0, "publish": 0, "topic": 0, "topic_name": 1}
#: Calls whose first argument is an event type.
TYPE_ARGUMENT = ("child", "new")


def schema_mismatches(event_types: tuple[str, ...], schema_dir: Path) -> list[str]:
    """What differs between the declared event types and the schema files, both directions."""
    problems = []
    files = {p.name[:-len(".json")]: p for p in schema_dir.glob("*.json")}
    for event_type in event_types:
        if event_type not in files:
            problems.append(f"{event_type}: declared in contracts, no schemas/{contracts.schema_file(event_type)}")
    for name, path in sorted(files.items()):
        if name not in event_types:
            problems.append(f"schemas/{path.name}: no event type in contracts.EVENT_TYPES")
            continue
        schema_id = json.loads(path.read_text(encoding="utf-8")).get("$id", "")
        if not schema_id.endswith("/" + path.name):
            problems.append(f"schemas/{path.name}: $id {schema_id!r} names another file")
    if len(set(event_types)) != len(event_types):
        problems.append("contracts.EVENT_TYPES lists a type twice")
    return problems


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _call_name(call: ast.Call) -> str | None:
    return call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", None)


def spelled_contracts(source: str, filename: str) -> list[str]:
    """Event types and stream names a module spells as literals instead of importing them."""
    tree = ast.parse(source, filename)
    docstrings = _docstrings(tree)
    type_pattern = re.compile("|".join(re.escape(t) for t in contracts.EVENT_TYPES))
    out = []

    def where(node: ast.AST) -> str:
        return f"{filename}:{node.lineno}"

    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            match = type_pattern.search(node.value)
            if match:
                out.append(f"{where(node)}: event type {match.group()!r} (use services.core.contracts)")
        elif isinstance(node, ast.keyword) and node.arg == "input_stream" and _is_str(node.value):
            out.append(f"{where(node.value)}: stream {node.value.value!r} as input_stream")
        elif isinstance(node, ast.Call):
            name = _call_name(node)
            index = STREAM_ARGUMENT.get(name)
            if index is not None and len(node.args) > index and _is_str(node.args[index]) \
                    and node.args[index].value in contracts.STREAMS:
                out.append(f"{where(node)}: stream {node.args[index].value!r} passed to {name}()")
            if name in TYPE_ARGUMENT and node.args and _is_str(node.args[0]) \
                    and node.args[0].value.startswith("vigil."):
                out.append(f"{where(node)}: event type {node.args[0].value!r} passed to {name}()")
        elif isinstance(node, (ast.Tuple, ast.List, ast.Set)) and len(node.elts) >= 2 \
                and all(_is_str(e) and e.value in contracts.STREAMS for e in node.elts):
            out.append(f"{where(node)}: a list of stream names")
    return out


def _is_str(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def test_event_types_and_schema_files_agree_both_ways():
    assert schema_mismatches(contracts.EVENT_TYPES, schemas.SCHEMA_DIR) == []
    assert set(schemas.SCHEMAS) == set(contracts.EVENT_TYPES)
    for event_type in contracts.EVENT_TYPES:
        schemas.validator(event_type)  # the file exists and is a valid draft 2020-12 schema


def test_the_schema_check_fails_on_a_missing_or_an_undeclared_schema(tmp_path):
    for event_type in contracts.EVENT_TYPES:
        (tmp_path / contracts.schema_file(event_type)).write_bytes(
            (schemas.SCHEMA_DIR / contracts.schema_file(event_type)).read_bytes())
    assert schema_mismatches(contracts.EVENT_TYPES, tmp_path) == []

    extra = tmp_path / "vigil.triage.extra.json"
    extra.write_text('{"$id": "https://vigil.example/schemas/vigil.triage.extra.json"}')
    assert schema_mismatches(contracts.EVENT_TYPES, tmp_path) == [
        "schemas/vigil.triage.extra.json: no event type in contracts.EVENT_TYPES"]

    (tmp_path / "vigil.triage.extra.json").unlink()
    (tmp_path / contracts.schema_file(contracts.LAB_RESULT)).unlink()
    assert schema_mismatches(contracts.EVENT_TYPES, tmp_path) == [
        "vigil.ingest.lab-result: declared in contracts, no schemas/vigil.ingest.lab-result.json"]

    (tmp_path / contracts.schema_file(contracts.LAB_RESULT)).write_text('{"$id": "https://x/other.json"}')
    assert schema_mismatches(contracts.EVENT_TYPES, tmp_path) == [
        "schemas/vigil.ingest.lab-result.json: $id 'https://x/other.json' names another file"]
    assert schema_mismatches((*contracts.EVENT_TYPES, contracts.LAB_RESULT), schemas.SCHEMA_DIR) == [
        "contracts.EVENT_TYPES lists a type twice"]


def test_every_type_constant_is_listed_and_the_streams_are_the_tenants():
    constants = {value for name, value in vars(contracts).items()
                 if name.isupper() and isinstance(value, str) and value.startswith("vigil.")}
    assert constants == set(contracts.EVENT_TYPES)
    assert len(set(contracts.STREAMS)) == len(contracts.STREAMS)
    assert all(STREAM_NAME.match(s) for s in contracts.STREAMS)
    assert tenancy.STREAMS == contracts.STREAMS
    for lane in lanes.LANES.values():
        assert {lane.events, lane.findings, lane.decisions} <= set(contracts.STREAMS)


def test_no_service_module_spells_an_event_type_or_a_stream():
    found = []
    for path in sorted(SERVICES.rglob("*.py")):
        if path == CONTRACTS_FILE:
            continue
        found += spelled_contracts(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert found == []


@pytest.mark.parametrize("source", [
    'TYPE = "vigil.triage.decision"',
    'ctx.emit("actions", out)',
    'SPEC = StageSpec(name="x", input_stream="findings", handler=h)',
    'topic = topic_name(tenant, "dlq")',
    'rows = await conn.fetch("SELECT 1 FROM t WHERE type = \'vigil.extraction.findings\'")',
    'out = ctx.child("vigil.triage.brand-new", data)',
    'STREAMS = ("findings", "actions")',
])
def test_the_spelling_check_catches(source):
    assert len(spelled_contracts(source, "example.py")) == 1


@pytest.mark.parametrize("source", [
    '"""Emits vigil.triage.decision on actions."""',
    'ctx.emit(contracts.ACTIONS, ctx.child(contracts.TRIAGE_DECISION, data))',
    'log = get_logger("vigil.triage")',
    'STAGE = "feedback"',
    'count = data["findings"]',
])
def test_the_spelling_check_lets_pass(source):
    assert spelled_contracts(source, "example.py") == []
