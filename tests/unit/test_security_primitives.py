"""Master secret settings, envelope format, key wrapping, audit hashing, RLS DDL: no servers."""
from __future__ import annotations

import base64
import os
from datetime import datetime, timezone

import pytest

from services.core import audit
from services.core.config import ConfigError
from services.core.crypto import (CryptoError, DecryptionError, KeyWrapper, check_purpose, key_id_of, open_sealed,
                                  seal)
from services.core.kv import TENANT_COMMANDS, tenant_acl_rules
from services.core.secrets import DEV_MASTER_KEY, SecretSettings, generate_master_key
from services.core.tenantdb import tenant_role, tenant_rls_sql

KEY = generate_master_key()


def test_dev_default_only_outside_prod():
    assert SecretSettings.from_env({}).is_dev_default
    assert SecretSettings.from_env({"VIGIL_ENV": "test"}).is_dev_default
    with pytest.raises(ConfigError, match="required when VIGIL_ENV=prod"):
        SecretSettings.from_env({"VIGIL_ENV": "prod"})
    dev = base64.b64encode(DEV_MASTER_KEY).decode()
    with pytest.raises(ConfigError, match="development master key is refused"):
        SecretSettings.from_env({"VIGIL_ENV": "prod", "VIGIL_MASTER_KEY": dev})
    assert not SecretSettings.from_env({"VIGIL_ENV": "prod", "VIGIL_MASTER_KEY": KEY}).is_dev_default


def test_master_key_sources_and_errors(tmp_path):
    path = tmp_path / "master.key"
    path.write_text(KEY + "\n")
    os.chmod(path, 0o600)
    from_file = SecretSettings.from_env({"VIGIL_MASTER_KEY_FILE": str(path)})
    assert from_file.master_key == base64.b64decode(KEY)
    assert KEY not in repr(from_file)
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        SecretSettings.from_env({"VIGIL_MASTER_KEY_FILE": str(path)})
    with pytest.raises(ConfigError, match="not both"):
        SecretSettings.from_env({"VIGIL_MASTER_KEY": KEY, "VIGIL_MASTER_KEY_FILE": str(path)})
    with pytest.raises(ConfigError, match="32 bytes"):
        SecretSettings.from_env({"VIGIL_MASTER_KEY": base64.b64encode(b"short").decode()})
    with pytest.raises(ConfigError, match="base64"):
        SecretSettings.from_env({"VIGIL_MASTER_KEY": "not base64 at all!"})
    urlsafe = base64.urlsafe_b64encode(base64.b64decode(KEY)).decode().rstrip("=")
    assert SecretSettings.from_env({"VIGIL_MASTER_KEY": urlsafe}).master_key == base64.b64decode(KEY)


def test_derived_credentials_are_separated():
    s = SecretSettings.from_env({"VIGIL_MASTER_KEY": KEY})
    values = {s.tenant_password("redis", "ta1"), s.tenant_password("redis", "ta2"),
              s.tenant_password("postgres", "ta1"), s.derive("vigil/kek/v1").hex()}
    assert len(values) == 4
    assert s.tenant_password("redis", "ta1") == SecretSettings.from_env({"VIGIL_MASTER_KEY": KEY}).tenant_password(
        "redis", "ta1")  # every process derives the same credential
    assert s.tenant_password("redis", "ta1") != SecretSettings.from_env({}).tenant_password("redis", "ta1")


def test_envelope_binds_tenant_purpose_and_bytes():
    dek = os.urandom(32)
    blob = seal(dek, 7, "ta1", "dlq", b"note text")
    assert blob[:3] == b"VGE" and blob[3] == 1 and key_id_of(blob) == 7
    assert open_sealed(dek, "ta1", "dlq", blob) == b"note text"
    for tenant, purpose, data in (("ta2", "dlq", blob), ("ta1", "hl7-raw", blob),
                                  ("ta1", "dlq", blob[:-1] + bytes([blob[-1] ^ 1])),
                                  ("ta1", "dlq", blob[:4] + (8).to_bytes(4, "big") + blob[8:])):
        with pytest.raises(DecryptionError):
            open_sealed(dek, tenant, purpose, data)
    with pytest.raises(DecryptionError, match="too short"):
        key_id_of(b"VGE")
    with pytest.raises(DecryptionError, match="unknown header"):
        key_id_of(b"XXX" + blob[3:])
    with pytest.raises(ValueError):
        check_purpose("Has Spaces")


def test_wrapped_keys_are_bound_to_tenant_key_id_and_master_key():
    wrapper = KeyWrapper.from_secrets(SecretSettings.from_env({"VIGIL_MASTER_KEY": KEY}))
    dek = os.urandom(32)
    wrapped = wrapper.wrap("ta1", 1, dek)
    assert wrapper.unwrap("ta1", 1, wrapped, wrapper.kek_id) == dek
    with pytest.raises(CryptoError, match="does not unwrap"):
        wrapper.unwrap("ta2", 1, wrapped, wrapper.kek_id)
    with pytest.raises(CryptoError, match="does not unwrap"):
        wrapper.unwrap("ta1", 2, wrapped, wrapper.kek_id)
    other = KeyWrapper.from_secrets(SecretSettings.from_env({}))
    with pytest.raises(CryptoError, match="another master key"):
        other.unwrap("ta1", 1, wrapped, wrapper.kek_id)


def test_audit_hash_covers_every_field():
    base = dict(chain_seq=1, time=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc), tenant="ta1",
                actor="extraction", action="phi.read", resources='["DocumentReference/1"]', details='{"i":1}',
                prev_hash=audit.GENESIS)
    digest = audit.record_hash(**base)
    assert digest == audit.record_hash(**base) and len(digest) == 64
    changes = {"chain_seq": 2, "time": base["time"].replace(microsecond=1), "tenant": "ta2", "actor": "extractioN",
               "action": "phi.write", "resources": '["DocumentReference/2"]', "details": '{"i":2}',
               "prev_hash": "1" + audit.GENESIS[1:]}
    for field, value in changes.items():
        assert audit.record_hash(**{**base, field: value}) != digest, field


def test_audit_details_refuse_phi_keys():
    assert audit._check_details({"b": 1, "a": [1, 2]}) == '{"a":[1,2],"b":1}'
    for bad in ({"note": "x"}, {"evidence": [{"Quote": "x"}]}, {"x": {"patient_name": "y"}}):
        with pytest.raises(audit.AuditError, match="PHI"):
            audit._check_details(bad)
    with pytest.raises(audit.AuditError, match="exceed"):
        audit._check_details({"blob": "x" * (audit.MAX_DETAILS_BYTES + 1)})


def test_rls_sql_and_role_names():
    sql = tenant_rls_sql("findings", ("SELECT", "INSERT"))
    assert "FORCE ROW LEVEL SECURITY" in sql and "GRANT SELECT, INSERT ON findings TO vigil_app" in sql
    assert "session_user = ('vigil_tenant_' || tenant)::name" in sql
    for bad in ("Findings", "x; DROP TABLE y", ""):
        with pytest.raises(ValueError):
            tenant_rls_sql(bad)
    with pytest.raises(ValueError):
        tenant_rls_sql("findings", ("TRUNCATE",))
    assert tenant_role("north-valley") == "vigil_tenant_north-valley"


def test_acl_rules_confine_keys_channels_and_commands():
    rules = tenant_acl_rules("ta1", "pw")
    assert rules[:2] == ["reset", "on"] and "~vigil:ta1:*" in rules and "&vigil:ta1:*" in rules
    assert rules.index("-@all") < rules.index("+get")
    assert not {"keys", "scan", "flushall", "flushdb", "config", "acl", "select", "psubscribe"} & set(TENANT_COMMANDS)
    assert "+client|setinfo" in tenant_acl_rules("ta1", "pw", (7, 2))
    assert "+client|setinfo" not in rules
