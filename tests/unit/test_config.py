import pytest

from services.core.config import ConfigError, Settings


def test_defaults_are_typed_and_frozen():
    s = Settings.from_env({})
    assert (s.kafka.host, s.kafka.port) == ("127.0.0.1", 9092)
    assert s.redis_host_port == ("127.0.0.1", 6379)
    assert s.postgres_host_port == ("127.0.0.1", 5432)
    assert s.default_partitions == 4
    with pytest.raises(Exception):
        s.log_level = "debug"  # frozen


@pytest.mark.parametrize("name,value,fragment", [
    ("VIGIL_KAFKA_BOOTSTRAP", "localhost", "HOST:PORT"),
    ("VIGIL_KAFKA_BOOTSTRAP", "h:99999", "HOST:PORT"),
    ("VIGIL_REDIS_URL", "http://x:1", "redis"),
    ("VIGIL_POSTGRES_DSN", "mysql://x/y", "postgres"),
    ("VIGIL_EHR_URL", "127.0.0.1:8080", "http"),
    ("VIGIL_LOG_LEVEL", "loud", "one of"),
    ("VIGIL_TOPIC_PARTITIONS", "0", "positive"),
    ("VIGIL_KAFKA_SECURITY_PROTOCOL", "TLS", "one of"),
])
def test_malformed_values_fail_fast_naming_the_variable(name, value, fragment):
    with pytest.raises(ConfigError) as info:
        Settings.from_env({name: value})
    assert name in str(info.value) and fragment in str(info.value)


def test_sasl_requires_credentials():
    with pytest.raises(ConfigError, match="VIGIL_KAFKA_SASL_USERNAME"):
        Settings.from_env({"VIGIL_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"})
    s = Settings.from_env({"VIGIL_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "VIGIL_KAFKA_SASL_USERNAME": "u",
                           "VIGIL_KAFKA_SASL_PASSWORD": "s3cret-pw"})
    kwargs = s.kafka.client_kwargs()
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512" and kwargs["sasl_plain_username"] == "u"
    assert "s3cret-pw" not in repr(s.kafka)


def test_each_tenant_logs_in_to_kafka_as_its_own_user(tmp_path):
    (tmp_path / "northvalley").mkdir()
    (tmp_path / "northvalley" / "password").write_text("nv-scram-secret\n")
    s = Settings.from_env({"VIGIL_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "VIGIL_KAFKA_SASL_USERNAME": "vigil-runtime",
                           "VIGIL_KAFKA_SASL_PASSWORD": "runtime-pw", "VIGIL_KAFKA_TENANT_CREDENTIALS_DIR": str(tmp_path)})
    tenant = s.kafka.client_kwargs("northvalley")
    assert (tenant["sasl_plain_username"], tenant["sasl_plain_password"]) == ("vigil-northvalley", "nv-scram-secret")
    process = s.kafka.client_kwargs()
    assert (process["sasl_plain_username"], process["sasl_plain_password"]) == ("vigil-runtime", "runtime-pw")
    with pytest.raises(ConfigError, match="lakeshore"):
        s.kafka.client_kwargs("lakeshore")  # no mounted password: a clear error, never the process identity


def test_monitor_passes_platform_credentials_to_faust():
    import faust

    from services.monitor.app import broker_credentials

    plain = Settings.from_env({})
    assert broker_credentials(plain) is None
    sasl = Settings.from_env({"VIGIL_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "VIGIL_KAFKA_SASL_USERNAME": "vigil-platform",
                              "VIGIL_KAFKA_SASL_PASSWORD": "platform-pw"})
    creds = broker_credentials(sasl)
    assert isinstance(creds, faust.SASLCredentials) and creds.username == "vigil-platform"
