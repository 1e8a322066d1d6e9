"""The integration profile: defaults, round trip through the registry, errors that name the setting."""
from __future__ import annotations

import pytest

from services.core.integration import DEFAULT, ProfileError, parse
from services.core.tenancy import Registry, TenantError

EPIC_LIKE = """
[tenants.epicsite]
mode = "silent"
[tenants.epicsite.integration]
family = "epic-like"
triggers = ["hl7v2-feed", "patient-poll"]
watch_list = "checkpoint-inhibitors"
note_sources = ["document-store", "ehr-fhir"]
results = ["hl7v2", "cds-hooks"]
ehr_accepts = []
[tenants.epicsite.integration.hl7_out]
host = "127.0.0.1"
port = 6661
message = "MDM^T02"
"""


def test_a_tenant_without_a_profile_gets_the_fhir_server_default(tmp_path):
    path = tmp_path / "tenants.toml"
    path.write_text('[tenants.plain]\nmode = "silent"\n')
    tenant = Registry.load(path).get("plain")
    assert tenant.integration == DEFAULT
    assert tenant.integration.accepts("Task") and tenant.integration.delivers("cds-hooks")
    assert "integration" not in tenant.to_table()  # the registry file is not rewritten with defaults


def test_a_declared_profile_survives_a_save_and_load(tmp_path):
    path = tmp_path / "tenants.toml"
    path.write_text(EPIC_LIKE)
    registry = Registry.load(path)
    profile = registry.get("epicsite").integration
    assert profile.family == "epic-like" and profile.hl7_out.message == "MDM^T02"
    assert not profile.accepts("Task") and not profile.accepts("Observation")
    assert profile.delivers("hl7v2") and profile.has_trigger("patient-poll")
    registry.save()
    assert Registry.load(path).get("epicsite").integration == profile


@pytest.mark.parametrize("table, named", [
    ({"triggers": ["webhook"]}, "integration.triggers"),
    ({"results": ["fhir"], "ehr_accepts": ["Observation"]}, "integration.ehr_accepts lacks Task"),
    ({"results": ["hl7v2"]}, "[integration.hl7_out]"),
    ({"results": ["hl7v2"], "hl7_out": {"host": "h", "port": 70000}}, "integration.hl7_out.port"),
    ({"results": ["hl7v2"], "hl7_out": {"host": "h", "port": 1, "message": "ADT^A01"}}, "hl7_out.message"),
    ({"triggers": ["patient-poll"]}, "integration.watch_list"),
    ({"triggers": ["hl7v2-feed"], "note_sources": ["ehr-fhir"]}, "integration.note_sources"),
    ({"triggers": ["r4-criteria"], "note_sources": ["document-store"]}, "integration.note_sources"),
    ({"family": "cerner"}, "integration.family"),
    ({"results": []}, "integration.results is empty"),
    ({"colour": "blue"}, "unknown keys"),
])
def test_an_invalid_profile_names_the_setting(table, named):
    with pytest.raises(ProfileError) as info:
        parse("site", table)
    assert named in str(info.value) and "tenant site" in str(info.value)


def test_the_registry_refuses_to_load_an_invalid_profile(tmp_path):
    path = tmp_path / "tenants.toml"
    path.write_text('[tenants.bad]\n[tenants.bad.integration]\nresults = ["fax"]\n')
    with pytest.raises(TenantError, match="integration.results"):
        Registry.load(path)
