"""docs/integration.md stays exact: its example profiles parse, ingest would start on them, and the
keys and values its profile table names are the ones services/core/integration.py reads."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

from services.core import integration
from services.core.tenancy import Registry, Tenant
from services.ingest import profiles
from services.ingest.config import IngestSettings

DOC = Path(__file__).resolve().parents[2] / "docs" / "integration.md"


def _examples() -> list[tuple[str, dict]]:
    blocks = re.findall(r"```toml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    out = []
    for block in blocks:
        for tenant, table in tomllib.loads(block)["tenants"].items():
            out.append((tenant, table["integration"]))
    return out


def test_every_example_profile_parses_and_ingest_starts_on_it(tmp_path):
    examples = _examples()
    assert {t for t, _ in examples} == {"stmary", "lakeside", "valley"}
    public = IngestSettings.from_env({"VIGIL_INGEST_PUBLIC_URL": "https://ingest.example.org"})
    families = set()
    for tenant, table in examples:
        profile = integration.parse(tenant, table)
        families.add(profile.family)
        profiles.check(Registry(tmp_path / "t.toml", [Tenant(id=tenant, integration=profile)]), public)
    assert families == {"epic-like", "fhir-server", "hl7-only"}


def test_the_profile_table_names_the_real_keys_and_values():
    text = DOC.read_text(encoding="utf-8")
    table = text[text.index("| key |"):text.index("Rules checked")]
    keys = set(re.findall(r"^\| `([a-z_]+)` \|", table, re.M))
    assert keys == integration.KEYS - {"hl7_out"}
    for key in integration.HL7_OUT_KEYS:
        assert f"`{key}`" in table
    for value in (*integration.FAMILIES, *integration.TRIGGERS, *integration.NOTE_SOURCES,
                  *integration.RESULT_CHANNELS, *integration.WRITABLE_TYPES, *integration.HL7_OUT_MESSAGES):
        assert f"`{value}`" in table, value
