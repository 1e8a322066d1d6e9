"""Ingest refuses to start on a tenant profile it cannot honour, naming the setting."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.core.config import ConfigError
from services.core.integration import parse
from services.core.tenancy import Registry, Tenant
from services.ingest import profiles
from services.ingest.config import IngestSettings

REPO = Path(__file__).resolve().parents[3]


def _registry(tmp_path, table: dict | None) -> Registry:
    return Registry(tmp_path / "tenants.toml", [Tenant(id="acme", integration=parse("acme", table))])


def test_r4_criteria_needs_a_public_notify_url(tmp_path):
    registry = _registry(tmp_path, {"triggers": ["r4-criteria"], "note_sources": ["ehr-fhir"]})
    with pytest.raises(ConfigError, match="VIGIL_INGEST_PUBLIC_URL") as err:
        profiles.check(registry, IngestSettings.from_env({}))
    assert "tenant acme: integration.triggers has r4-criteria" in str(err.value)
    public = IngestSettings.from_env({"VIGIL_INGEST_PUBLIC_URL": "https://ingest.example.org"})
    assert public.public_url_set and not IngestSettings.from_env({}).public_url_set
    profiles.check(registry, public)


def test_subscription_triggers_need_a_family_that_has_subscriptions(tmp_path):
    public = IngestSettings.from_env({"VIGIL_INGEST_PUBLIC_URL": "https://ingest.example.org"})
    for trigger in ("backport-topic", "r4-criteria"):
        registry = _registry(tmp_path, {"family": "epic-like", "triggers": [trigger], "note_sources": ["ehr-fhir"]})
        with pytest.raises(ConfigError, match="integration.family is epic-like"):
            profiles.check(registry, public)


def test_the_default_and_hl7_profiles_start_without_a_public_url(tmp_path):
    profiles.check(_registry(tmp_path, None), IngestSettings.from_env({}))
    hl7 = {"family": "hl7-only", "triggers": ["hl7v2-feed"], "note_sources": ["document-store"],
           "results": ["cds-hooks"], "ehr_accepts": []}
    profiles.check(_registry(tmp_path, hl7), IngestSettings.from_env({}))


def test_vigil_serve_ingest_refuses_to_start_and_names_the_setting(tmp_path):
    tenants = tmp_path / "tenants.toml"
    tenants.write_text('[tenants.acme]\n[tenants.acme.integration]\ntriggers = ["r4-criteria"]\n'
                       'note_sources = ["ehr-fhir"]\n')
    env = {k: v for k, v in os.environ.items() if k != "VIGIL_INGEST_PUBLIC_URL"}
    env["VIGIL_TENANTS_FILE"] = str(tenants)
    done = subprocess.run([sys.executable, "-m", "services.cli", "serve", "ingest"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "integration.triggers has r4-criteria" in done.stderr and "VIGIL_INGEST_PUBLIC_URL" in done.stderr
