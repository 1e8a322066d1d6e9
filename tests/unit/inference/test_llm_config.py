"""Per-tenant LLM settings fail fast, naming the tenant and key, never the key's value."""
from __future__ import annotations

import pytest

from services.core.config import ConfigError
from services.core.tenancy import Tenant
from services.inference.llm.config import LlmConfig, tenant_engine

BASE = {"llm_base_url": "http://127.0.0.1:9/v1", "llm_model": "m", "llm_api_key_env": "KEY"}


def tenant(**settings) -> Tenant:
    return Tenant(id="tenant-a", settings=settings)


def test_defaults_and_cost():
    config = LlmConfig.from_tenant(tenant(**BASE, llm_price_input_per_mtok=2.0, llm_price_output_per_mtok=8.0),
                                   {"KEY": "sk-secret"})
    assert config.over_budget == "rules" and config.daily_budget_usd == 0 and "sk-secret" not in repr(config)
    assert config.cost(1_000_000, 500_000) == pytest.approx(6.0)


def test_key_from_file(tmp_path):
    key = tmp_path / "key"
    key.write_text("sk-from-file\n")
    settings = {**BASE, "llm_api_key_file": str(key)}
    del settings["llm_api_key_env"]
    assert LlmConfig.from_tenant(tenant(**settings), {}).api_key == "sk-from-file"


@pytest.mark.parametrize("changes, message", [
    ({"llm_base_url": "ftp://x"}, "llm_base_url"),
    ({"llm_model": ""}, "llm_model"),
    ({"llm_api_key_file": "/k"}, "are exclusive"),
    ({"llm_timeout_seconds": 601}, "llm_timeout_seconds"),
    ({"llm_api_key_env": "MISSING"}, "MISSING is not set"),
    ({"llm_over_budget": "panic"}, "llm_over_budget"),
    ({"llm_daily_budget_usd": -1}, "llm_daily_budget_usd"),
    ({"llm_timeout_seconds": "30"}, "llm_timeout_seconds"),
])
def test_bad_settings_name_the_tenant_and_key(changes, message):
    with pytest.raises(ConfigError) as info:
        LlmConfig.from_tenant(tenant(**{**BASE, **changes}), {"KEY": "sk-secret"})
    assert message in str(info.value) and "tenant-a" in str(info.value) and "sk-secret" not in str(info.value)


def test_engine_setting():
    assert tenant_engine(tenant()) == "rules"
    assert tenant_engine(tenant(engine="hybrid")) == "hybrid"
    with pytest.raises(ConfigError):
        tenant_engine(tenant(engine="gpt"))


def test_every_purpose_reads_its_endpoint_with_the_same_rules():
    settings = {**BASE, "scheduling_llm_base_url": "http://127.0.0.1:9/v2/", "scheduling_llm_model": "chat-m",
                "scheduling_llm_price_input_per_mtok": 1.0, "llm_daily_budget_usd": 5.0}
    config = LlmConfig.from_tenant(tenant(**settings), {"KEY": "sk"}, "scheduling")
    assert (config.purpose, config.base_url, config.model) == ("scheduling", "http://127.0.0.1:9/v2", "chat-m")
    assert config.api_key == "unused"               # no key setting: a local endpoint without auth
    assert config.daily_budget_usd == 5.0           # the budget is the tenant's, whatever the purpose
    assert config.cost(1_000_000, 1_000_000) == pytest.approx(1.0)
    for key, value, message in (("scheduling_llm_base_url", "ftp://x", "scheduling_llm_base_url"),
                                ("scheduling_llm_timeout_seconds", "30", "scheduling_llm_timeout_seconds"),
                                ("scheduling_llm_api_key_env", "MISSING", "MISSING is not set")):
        with pytest.raises(ConfigError, match=message):
            LlmConfig.from_tenant(tenant(**{**settings, key: value}), {"KEY": "sk"}, "scheduling")
    with pytest.raises(ValueError, match="unknown LLM purpose"):
        LlmConfig.from_tenant(tenant(**settings), {}, "poetry")
