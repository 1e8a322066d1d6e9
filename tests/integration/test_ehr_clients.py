"""services.core.ehraccess.EhrClients, the one loader of a service's per-tenant EHR clients, against
the EHR sandbox: each tenant its own started client under the service's own SMART client, a tenant
whose settings changed gets a new client (the old one closed), tests' fixed clients used as given."""
from __future__ import annotations

import pytest

from services.core.config import ConfigError
from services.core.ehraccess import EhrClients
from services.core.tenancy import Registry, Tenant
from services.core.tenantdir import TenantDirectory

SCOPE = "system/Patient.crs"


async def _smart_tenant(ehr_server, tenant_id: str, tmp_path, client_id: str = "vigil-loader") -> Tenant:
    admin = ehr_server.admin()
    await admin.create_tenant(tenant_id)
    creds = await admin.new_client(tenant_id, client_id, [SCOPE], alg="RS384")  # the key file default
    await admin.__aexit__(None, None, None)
    key = tmp_path / f"{tenant_id}-{client_id}.pem"
    key.write_text(creds.private_key_pem, encoding="ascii")
    return Tenant(id=tenant_id, mode="active", settings={"loader_client_id": client_id,
                                                         "loader_private_key_file": str(key),
                                                         "loader_key_id": creds.kid})


@pytest.fixture
async def two_tenants(ehr_server, tenant_id, tmp_path):
    other = tenant_id + "b"
    tenants = [await _smart_tenant(ehr_server, tenant_id, tmp_path), await _smart_tenant(ehr_server, other, tmp_path)]
    path = tmp_path / "tenants.toml"
    Registry(path, tenants).save()
    return path, tenants


async def test_each_tenant_gets_its_own_authenticated_client(stack, ehr_server, two_tenants):
    path, (a, b) = two_tenants
    ehr = EhrClients(ehr_server.url, "test", prefix="loader", default_scope=SCOPE,
                     tenants=TenantDirectory(path).get)
    try:
        client_a, client_b = await ehr.client(a.id), await ehr.client(b)
        assert client_a is not client_b
        assert client_a.base_url == ehr_server.base(a.id) and client_b.base_url == ehr_server.base(b.id)
        assert client_a.credentials.client_id == "vigil-loader" and client_a.credentials.scope == SCOPE
        assert client_a.capabilities["resourceType"] == "CapabilityStatement"   # started when made
        created = await client_a.create({"resourceType": "Patient", "name": [{"family": "Loader"}]})
        assert (await client_a.read("Patient", created.id))["id"] == created.id
        assert await client_b.search("Patient", {"_id": created.id}) == []     # tenants stay apart
        assert await ehr.client(a.id) is client_a                                # held, not remade
    finally:
        await ehr.close()


async def test_changed_settings_replace_the_client_and_close_the_old(stack, ehr_server, two_tenants, tmp_path):
    path, (a, b) = two_tenants
    ehr = EhrClients(ehr_server.url, "test", prefix="loader", default_scope=SCOPE,
                     tenants=TenantDirectory(path).get)
    try:
        old = await ehr.client(a.id)
        rotated = await _smart_tenant_client(ehr_server, a, tmp_path)
        Registry(path, [rotated, b]).save()
        new = await ehr.client(a.id)
        assert new is not old and new.credentials.client_id == "vigil-loader-2"
        assert old._http.is_closed and not new._http.is_closed
        assert await new.search("Patient", {"_count": "1"}) is not None
    finally:
        await ehr.close()
    assert new._http.is_closed


async def _smart_tenant_client(ehr_server, tenant: Tenant, tmp_path) -> Tenant:
    admin = ehr_server.admin()
    creds = await admin.new_client(tenant.id, "vigil-loader-2", [SCOPE], alg="RS384")
    await admin.__aexit__(None, None, None)
    key = tmp_path / f"{tenant.id}-2.pem"
    key.write_text(creds.private_key_pem, encoding="ascii")
    return Tenant(id=tenant.id, mode="active", settings={"loader_client_id": "vigil-loader-2",
                                                         "loader_private_key_file": str(key),
                                                         "loader_key_id": creds.kid})


async def test_fixed_clients_are_used_as_given_and_not_closed(stack, ehr_tenant):
    ehr = EhrClients("http://127.0.0.1:9", "test", prefix="loader", default_scope=SCOPE,
                     fixed={ehr_tenant.tenant: ehr_tenant.client})
    assert await ehr.client(ehr_tenant.tenant) is ehr_tenant.client
    await ehr.close()
    assert not ehr_tenant.client._http.is_closed


async def test_misconfigured_tenant_is_a_config_error_naming_the_setting(stack, tmp_path):
    ehr = EhrClients("http://127.0.0.1:9", "prod", prefix="loader", default_scope=SCOPE)
    with pytest.raises(ConfigError, match="settings.loader_client_id is required when VIGIL_ENV=prod"):
        await ehr.client(Tenant(id="tnoauth"))
    broken = Tenant(id="tnokey", settings={"loader_client_id": "x"})
    with pytest.raises(ConfigError, match="loader_private_key_file is required"):
        await ehr.client(broken)
    with pytest.raises(TypeError, match="tenants lookup"):
        await ehr.client("tnoauth")
    await ehr.close()
