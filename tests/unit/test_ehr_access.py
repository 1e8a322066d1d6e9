"""A tenant's SMART client settings: the signing algorithm follows the key unless set, and must match it."""
from __future__ import annotations

import pytest

from services.core.config import ConfigError
from services.core.ehraccess import EhrAccess
from services.core.fhir import key_algorithm, new_client_key
from services.core.tenancy import Tenant


def _tenant(tmp_path, pem: str | None, **settings) -> Tenant:
    key = tmp_path / "client.pem"
    if pem is not None:
        key.write_text(pem, encoding="ascii")
    return Tenant(id="northvalley", settings={"writeback_client_id": "vigil-writeback",
                                     "writeback_private_key_file": str(key), **settings})


def _access(tenant: Tenant) -> EhrAccess:
    return EhrAccess.from_tenant(tenant, "http://ehr.example", "dev", prefix="writeback", default_scope="system/Task.cu")


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_the_algorithm_is_the_keys_own_unless_set(tmp_path, alg):
    pem, _ = new_client_key(alg)
    assert key_algorithm(pem) == alg
    assert _access(_tenant(tmp_path, pem)).credentials.alg == alg
    assert _access(_tenant(tmp_path, pem, writeback_key_alg=alg)).credentials.alg == alg


def test_a_setting_that_contradicts_the_key_is_a_clear_configuration_error(tmp_path):
    pem, _ = new_client_key("ES384")
    with pytest.raises(ConfigError, match="writeback_key_alg='RS384' but the key .* is for ES384"):
        _access(_tenant(tmp_path, pem, writeback_key_alg="RS384"))
    with pytest.raises(ConfigError, match="expected one of RS384, ES384"):
        _access(_tenant(tmp_path, pem, writeback_key_alg="HS256"))


def test_a_file_that_holds_no_usable_key_is_named_without_its_content(tmp_path):
    secret_looking = "-----BEGIN PRIVATE KEY-----\nnot-a-key-patient-MRN-123\n-----END PRIVATE KEY-----\n"
    with pytest.raises(ConfigError, match="not an unencrypted PEM private key") as err:
        _access(_tenant(tmp_path, secret_looking))
    assert "MRN" not in str(err.value)
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    p256 = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    with pytest.raises(ConfigError, match="EC P-384"):
        _access(_tenant(tmp_path, p256))


def test_a_service_reads_a_tenants_key_again_only_when_the_entry_or_the_key_file_changed(tmp_path, monkeypatch):
    import os

    from services.core import ehraccess
    from services.core.ehraccess import EhrClients

    pem, _ = new_client_key("ES384")
    tenant = _tenant(tmp_path, pem)
    parsed = []
    real = ehraccess.key_algorithm
    monkeypatch.setattr(ehraccess, "key_algorithm", lambda p: parsed.append(1) or real(p))
    clients = EhrClients("http://ehr.example", "dev", prefix="writeback", default_scope="system/Task.cu")
    first = clients.access(tenant)
    assert clients.access(tenant) is first and len(parsed) == 1          # the same entry, the same key file
    assert clients.access(_tenant(tmp_path, None)) is first               # an equal entry (a registry reload)
    assert len(parsed) == 1
    scoped = clients.access(_tenant(tmp_path, None, writeback_scope="system/Task.r"))
    assert scoped.credentials.scope == "system/Task.r" and len(parsed) == 2   # the entry changed
    rotated, _ = new_client_key("RS384")
    key = tmp_path / "client.pem"
    key.write_text(rotated, encoding="ascii")
    os.utime(key, ns=(1, 1))                                              # a new key file (another stamp)
    assert clients.access(tenant).credentials.alg == "RS384" and len(parsed) == 3
    key.unlink()
    with pytest.raises(ConfigError, match="cannot read"):                 # a key file gone: an error each time
        clients.access(tenant)
