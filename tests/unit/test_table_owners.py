"""Every PostgreSQL table has one owning service, which alone writes it; docs/tables.md lists them.

Read from the source, without running anything:

- a table is *created* by the package whose SQL says ``CREATE TABLE`` (its owner);
- a package *writes* a table when its own SQL inserts, updates, deletes or truncates it, or when it
  calls a function of a ``services/core`` module whose SQL writes it (directly or through another
  function of that module). Names that collections also have (``add``, ``insert``, ``kill``, ...)
  count only in files that import the core module themselves, so ``set.add`` is not a write.

Tables of the shared plumbing in core (audit log, bus effects and dead letters, data keys, revoked
tokens, schema steps) are written by every service through one module each and are listed in
``PLUMBING``. Every other table must have exactly one writer, its owner; ``KNOWN`` lists the tables
that still break the rule and who writes them today. The test fails on a new breach, on a listed
breach that changed, and on a table docs/tables.md does not list, so both lists only shrink.
"""
from __future__ import annotations

import ast
import functools
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "services"
DOC = ROOT / "docs" / "tables.md"

WRITE = re.compile(r"\b(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM|TRUNCATE(?:\s+TABLE)?)\s+([a-z_][a-z0-9_]*)", re.I)
CREATE = re.compile(r"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?([a-z_][a-z0-9_]*)", re.I)
#: Method names that lists, sets, dicts or processes also have.
GENERIC = {"add", "insert", "kill", "append", "update", "get", "put", "delete", "pop", "remove", "clear", "set"}

#: table -> why every service may write it (through the one core module that holds its SQL).
PLUMBING = {
    "vigil_audit_log": "core/audit.py: every service appends its audit records",
    "vigil_bus_effects": "core/bus: each stage's exactly-once effect claims",
    "vigil_tenant_keys": "core/crypto.py: data keys created on first use by whichever service seals first",
    "vigil_revoked_tokens": "core/revocation.py: the credential deny list",
    "vigil_schema_steps": "core/db.py: each service's migrations",
}
#: Tables read only by their owner: everyone else asks the owner's API (control's dead-letter index).
OWNER_READS_ONLY = {"vigil_dlq_entries", "vigil_dlq_fingerprints", "vigil_dlq_replay_counts", "vigil_dlq_replay_jobs"}
READ = re.compile(r"\b(?:FROM|JOIN)\s+([a-z_][a-z0-9_]*)", re.I)
#: (table, package) -> why a package other than the owner still reads the table by SQL. Every other
#: package learns what a table holds from its owner's events or API; the list only shrinks.
FOREIGN_READS = {
    ("vigil_decisions", "monitor"): "figures.py: the reconciliation, an independent second source by design",
    ("ingest_documents", "tools"): "document_store.py: GetNote reads the sealed note store",
    ("ingest_documents", "hl7out"): "patients.py: the patient identifiers of a decision's document",
    ("ingest_patients", "hl7out"): "patients.py: the patient identifiers of a decision's document",
    ("vigil_modes", "core"): "core/modes.py: every stage reads modes through the one cache",
}
#: The command layer wires services together and may read any table.
COMMAND_LAYER = {"commands", "cli"}
#: table -> (the writers today, the owner it moves to). Shrinks as ownership moves.
KNOWN = {
}


@functools.cache
def _parse(path: Path) -> ast.AST:
    """A module's tree, parsed once per run (the checks below walk every module of services/)."""
    return ast.parse(path.read_text(encoding="utf-8"))


@functools.cache
def _nodes(path: Path) -> tuple[ast.AST, ...]:
    return tuple(ast.walk(_parse(path)))


@functools.cache
def _module_strings(path: Path) -> tuple[str, ...]:
    return tuple(n.value for n in _nodes(path) if isinstance(n, ast.Constant) and isinstance(n.value, str))


def _strings(node: ast.AST) -> list[str]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def _package(path: Path, root: Path) -> str:
    parts = path.relative_to(root).parts
    return parts[0] if len(parts) > 1 else parts[0].removesuffix(".py")


def _core_module(node: ast.AST) -> list[str]:
    """The services.core modules an import statement names."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.startswith("services.core.")]
    if isinstance(node, ast.ImportFrom) and node.module:
        if node.module == "services.core":
            return [f"services.core.{a.name}" for a in node.names]
        if node.module.startswith("services.core."):
            return [node.module]
    return []


@functools.cache
def analyse(root: Path = SERVICES) -> tuple[dict[str, str], dict[str, set[str]]]:
    """(table -> creating package or core module, table -> packages that write it)."""
    trees = {p: _parse(p) for p in root.rglob("*.py")}
    created: dict[str, str] = {}
    for path, tree in trees.items():
        for text in _module_strings(path):
            for match in CREATE.finditer(text):
                rel = path.relative_to(root)
                created[match.group(1).lower()] = (f"core/{rel.parts[1]}".removesuffix(".py")
                                                   if rel.parts[0] == "core" else rel.parts[0])
    tables = set(created)
    writers: dict[str, set[str]] = defaultdict(set)
    core_writes: dict[str, dict[str, set[str]]] = {}
    for path, tree in trees.items():
        package = _package(path, root)
        for text in _module_strings(path):
            for match in WRITE.finditer(text):
                if match.group(1).lower() in tables and package != "core":
                    writers[match.group(1).lower()].add(package)
        if package != "core":
            continue
        functions: dict[str, tuple[set[str], set[str]]] = {}
        for node in _nodes(path):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("ensure_schema"):
                own = {m.group(1).lower() for s in _strings(node) for m in WRITE.finditer(s)} & tables
                calls = {c.func.attr if isinstance(c.func, ast.Attribute) else getattr(c.func, "id", "")
                         for c in ast.walk(node) if isinstance(c, ast.Call)}
                functions[node.name] = (own, calls)
        changed = True
        while changed:  # a function that calls a writer of the same module writes too
            changed = False
            for name, (own, calls) in functions.items():
                more = set().union(*(functions[c][0] for c in calls if c in functions and c != name))
                if not more <= own:
                    functions[name] = (own | more, calls)
                    changed = True
        module = "services." + ".".join(path.relative_to(root).with_suffix("").parts)
        core_writes[module] = {name: own for name, (own, _) in functions.items() if own}
    imported_by: dict[str, set[str]] = defaultdict(set)
    for path, tree in trees.items():
        for node in _nodes(path):
            for module in _core_module(node):
                imported_by[_package(path, root)].add(module)
    for path, tree in trees.items():
        package = _package(path, root)
        if package == "core":
            continue
        here = {m for node in _nodes(path) for m in _core_module(node)}
        used = ({n.attr for n in _nodes(path) if isinstance(n, ast.Attribute)}
                | {n.id for n in _nodes(path) if isinstance(n, ast.Name)})
        for module in imported_by[package]:
            for name, written in core_writes.get(module, {}).items():
                if name in used and (name not in GENERIC or module in here):
                    for table in written:
                        writers[table].add(package)
    return created, writers


@functools.cache
def analysed() -> tuple[dict[str, str], dict[str, set[str]]]:
    return analyse()


def test_every_table_has_one_writer_its_owner():
    created, writers = analysed()
    breaches = {}
    for table, owner in sorted(created.items()):
        if table in PLUMBING:
            assert owner.startswith("core/"), f"{table}: plumbing tables live in services/core, not {owner}"
            continue
        found = writers.get(table, set())
        if table in KNOWN:
            assert found == KNOWN[table][0], f"{table}: writers changed to {sorted(found)}; update KNOWN"
            continue
        if owner.startswith("core/"):
            breaches[table] = f"a domain table in {owner}: it belongs to the one service that writes it"
        elif found - {owner}:
            breaches[table] = f"owned by {owner} but also written by {sorted(found - {owner})}"
    assert not breaches, breaches
    gone = sorted(set(KNOWN) - set(created))
    assert not gone, f"no longer created, remove from KNOWN: {gone}"


def test_docs_list_every_table_with_its_owner():
    created, _ = analysed()
    text = DOC.read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `([a-z_0-9]+)` \| ([^|]+?) \|", text, re.M))
    assert set(rows) == set(created), (f"docs/tables.md misses {sorted(set(created) - set(rows))}, "
                                       f"lists gone {sorted(set(rows) - set(created))}")
    for table, owner in rows.items():
        expected = KNOWN[table][1] if table in KNOWN else ("core (plumbing)" if table in PLUMBING else created[table])
        assert owner.strip() == expected, f"docs/tables.md: {table} owner {owner.strip()!r}, expected {expected!r}"


def readers(root: Path = SERVICES) -> dict[str, set[str]]:
    """table -> packages whose SQL reads it (FROM / JOIN)."""
    found: dict[str, set[str]] = defaultdict(set)
    for path in root.rglob("*.py"):
        for text in _module_strings(path):
            for match in READ.finditer(text):
                found[match.group(1).lower()].add(_package(path, root))
    return found


def test_owner_only_tables_are_read_by_their_owner_alone():
    created, _ = analysed()
    seen = readers()
    for table in sorted(OWNER_READS_ONLY):
        assert table in created, f"{table} is no longer created; update OWNER_READS_ONLY"
        assert seen.get(table, set()) <= {created[table]}, \
            f"{table} is read by SQL outside {created[table]}: {sorted(seen[table] - {created[table]})} (use its API)"


def test_the_read_check_sees_a_foreign_reader(tmp_path):
    root = tmp_path / "services"
    for package in ("control", "commands"):
        (root / package).mkdir(parents=True)
    (root / "control" / "store.py").write_text('SQL = "CREATE TABLE x_index (id text)"\nQ = "SELECT id FROM x_index"\n')
    (root / "commands" / "summary.py").write_text('Q = "SELECT count(*) FROM x_index WHERE id = $1"\n')
    assert readers(root)["x_index"] == {"control", "commands"}


def test_the_check_sees_a_second_writer(tmp_path):
    root = tmp_path / "services"
    for package in ("core", "triage", "writeback"):
        (root / package).mkdir(parents=True)
    (root / "core" / "ledger.py").write_text(
        'STEPS = ["CREATE TABLE IF NOT EXISTS x_ledger (id text)"]\n'
        'async def record(conn):\n    await conn.execute("INSERT INTO x_ledger (id) VALUES (1)")\n'
        'async def note(conn):\n    await record(conn)\n')
    (root / "triage" / "handler.py").write_text(
        "from services.core import ledger\nasync def go(c):\n    await ledger.record(c)\n")
    (root / "writeback" / "handler.py").write_text(
        "from services.core.ledger import note\nasync def go(c):\n    await note(c)\n    s = set()\n    s.add(1)\n")
    (root / "writeback" / "own.py").write_text(
        'SQL = "CREATE TABLE wb_own (id text)"\nW = "UPDATE x_ledger SET id = 2"\n')
    created, writers = analyse(root)
    assert created == {"x_ledger": "core/ledger", "wb_own": "writeback"}
    assert writers["x_ledger"] == {"triage", "writeback"}
    assert "wb_own" not in writers


def foreign_reads(root: Path = SERVICES) -> set[tuple[str, str]]:
    """(table, package) for every SQL read of a service's table outside its owner and the command layer."""
    created, _ = analyse(root)
    return {(table, package) for table, packages in readers(root).items() if table in created
            and not created[table].startswith("core/") for package in packages
            if package != created[table] and package not in COMMAND_LAYER}


def test_other_services_do_not_read_a_services_table_by_sql():
    """Other services learn what a table holds from its owner's events or its API: the CDS Hooks
    cards, for one, come from cdshooks' own read model, never from triage's decision ledger."""
    found = foreign_reads()
    new = sorted(found - set(FOREIGN_READS))
    gone = sorted(set(FOREIGN_READS) - found)
    assert not new, f"SQL reads of another service's table (use its events or API): {new}"
    assert not gone, f"no longer read, remove from FOREIGN_READS: {gone}"


def test_the_foreign_read_check_sees_cdshooks_reading_the_ledger(tmp_path):
    root = tmp_path / "services"
    for package in ("triage", "cdshooks", "commands"):
        (root / package).mkdir(parents=True)
    (root / "triage" / "ledger.py").write_text(
        'STEPS = ["CREATE TABLE IF NOT EXISTS vigil_decisions (id text)"]\n'
        'W = "INSERT INTO vigil_decisions (id) VALUES ($1)"\n')
    (root / "cdshooks" / "cards.py").write_text(
        'Q = """\nSELECT id, task_id\nFROM vigil_decisions\nWHERE patient = $1\n"""\n')
    (root / "cdshooks" / "projection.py").write_text(
        'S = "CREATE TABLE IF NOT EXISTS cdshooks_findings (id text)"\nQ = "SELECT id FROM cdshooks_findings"\n')
    (root / "commands" / "demo.py").write_text('Q = "SELECT count(*) FROM vigil_decisions"\n')
    assert foreign_reads(root) == {("vigil_decisions", "cdshooks")}
