import pytest

from services.core.tenancy import Registry, Tenant, TenantError, tenant_of_topic, topic_name


@pytest.mark.parametrize("bad", ["", "A", "ab", "UPPER", "has.dot", "has_underscore", "1starts", "x" * 40, "end-"])
def test_bad_tenant_ids_are_rejected(bad):
    with pytest.raises(TenantError):
        topic_name(bad, "findings")


def test_topic_names_and_reverse():
    assert topic_name("northvalley", "ehr-events") == "vigil.northvalley.ehr-events"
    assert tenant_of_topic("vigil.northvalley.extraction.retry.1") == "northvalley"
    with pytest.raises(TenantError):
        tenant_of_topic("other.northvalley.findings")


def test_registry_round_trip(tmp_path):
    path = tmp_path / "tenants.toml"
    reg = Registry(path)
    reg.put(Tenant(id="northvalley", display_name='North "Valley"', mode="pilot", hl7_facilities=("NV", "NV2"),
                   settings={"engine": "rules", "budget_usd": 12.5, "pilot_practitioners": ["p1"]}))
    reg.put(Tenant(id="lakeshore"))
    reg.save()
    loaded = Registry.load(path)
    assert [t.id for t in loaded] == ["lakeshore", "northvalley"]
    nv = loaded.get("northvalley")
    assert nv.display_name == 'North "Valley"' and nv.mode == "pilot" and nv.hl7_facilities == ("NV", "NV2")
    assert nv.settings == {"engine": "rules", "budget_usd": 12.5, "pilot_practitioners": ["p1"]}
    assert loaded.by_facility("NV2").id == "northvalley"
    assert loaded.by_facility("NOPE") is None


def test_registry_rejects_bad_entries(tmp_path):
    path = tmp_path / "tenants.toml"
    path.write_text('[tenants.northvalley]\nmode = "loud"\n')
    with pytest.raises(TenantError, match="mode"):
        Registry.load(path)
    path.write_text('[tenants.northvalley]\ncolour = "red"\n')
    with pytest.raises(TenantError, match="unknown keys"):
        Registry.load(path)
    path.write_text("not toml [")
    with pytest.raises(TenantError, match="TOML"):
        Registry.load(path)
