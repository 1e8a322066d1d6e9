"""Process settings: read the environment once into a frozen, typed object.

Every value is parsed and checked here, so a missing or malformed value stops the
process at start-up with a message naming the variable, never later mid-request.
Tests pass their own mapping: ``Settings.from_env({"VIGIL_REDIS_URL": ...})``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Mapping, TypeVar
from urllib.parse import urlparse

T = TypeVar("T")

KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")
LOG_LEVELS = ("debug", "info", "warning", "error")
ENVIRONMENTS = ("dev", "test", "prod")


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def _parse_host_port(name: str, raw: str) -> tuple[str, int]:
    host, sep, port = raw.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{name}={raw!r}: expected HOST:PORT, e.g. 127.0.0.1:9092")
    return host, int(port)


def _parse_url(name: str, raw: str, schemes: tuple[str, ...]) -> str:
    parsed = urlparse(raw)
    if parsed.scheme not in schemes or not parsed.hostname:
        raise ConfigError(f"{name}={raw!r}: expected a URL with scheme {' or '.join(schemes)} and a host")
    try:
        parsed.port
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r}: bad port ({exc})") from None
    return raw


def _parse_choice(name: str, raw: str, choices: tuple[str, ...]) -> str:
    if raw not in choices:
        raise ConfigError(f"{name}={raw!r}: expected one of {', '.join(choices)}")
    return raw


def _parse_positive_int(name: str, raw: str) -> int:
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"{name}={raw!r}: expected a positive whole number")
    return int(raw)


def _parse_bool(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name}={raw!r}: expected true or false")


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap: str
    host: str
    port: int
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    #: ``<dir>/<tenant>/password`` holds tenant T's SCRAM password (user ``vigil-<T>``); a tenant's
    #: clients log in as that user, so the broker's prefixed ACLs fence each tenant.
    tenant_credentials_dir: Path | None = None

    def sasl_identity(self, tenant: str | None = None) -> tuple[str | None, str | None]:
        """(username, password): the tenant's own identity when one is mounted, else the process's."""
        if tenant is None or self.tenant_credentials_dir is None:
            return self.sasl_username, self.sasl_password
        path = self.tenant_credentials_dir / tenant / "password"
        try:
            password = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"VIGIL_KAFKA_TENANT_CREDENTIALS_DIR: no readable password for tenant {tenant!r} "
                              f"at {path} ({exc.strerror or type(exc).__name__})") from None
        return f"vigil-{tenant}", password

    def client_kwargs(self, tenant: str | None = None) -> dict:
        """Keyword arguments shared by every aiokafka client; ``tenant`` picks that tenant's identity."""
        kwargs: dict = {"bootstrap_servers": self.bootstrap, "security_protocol": self.security_protocol}
        if self.security_protocol.startswith("SASL"):
            username, password = self.sasl_identity(tenant)
            kwargs.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=username,
                          sasl_plain_password=password)
        if self.security_protocol in ("SSL", "SASL_SSL"):
            import ssl

            kwargs["ssl_context"] = ssl.create_default_context(cafile=self.ssl_cafile)
        return kwargs


@dataclass(frozen=True)
class Settings:
    environment: str
    state_dir: Path
    tenants_file: Path
    kafka: KafkaSettings
    redis_url: str
    postgres_dsn: str
    ehr_url: str
    log_level: str
    default_partitions: int

    @property
    def redis_host_port(self) -> tuple[str, int]:
        parsed = urlparse(self.redis_url)
        return parsed.hostname or "127.0.0.1", parsed.port or 6379

    @property
    def postgres_host_port(self) -> tuple[str, int]:
        parsed = urlparse(self.postgres_dsn)
        return parsed.hostname or "127.0.0.1", parsed.port or 5432

    @property
    def ehr_host_port(self) -> tuple[str, int]:
        parsed = urlparse(self.ehr_url)
        return parsed.hostname or "127.0.0.1", parsed.port or (443 if parsed.scheme == "https" else 80)

    def with_overrides(self, **changes) -> "Settings":
        return replace(self, **changes)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        source = os.environ if env is None else env

        def get(name: str, default: str | None, parse: Callable[[str, str], T] = lambda n, v: v) -> T:
            raw = source.get(name)
            if raw is None or raw == "":
                if default is None:
                    raise ConfigError(f"{name} is required but not set")
                raw = default
            return parse(name, raw)

        bootstrap = get("VIGIL_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
        host, port = _parse_host_port("VIGIL_KAFKA_BOOTSTRAP", bootstrap.split(",")[0])
        protocol = get("VIGIL_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT",
                       lambda n, v: _parse_choice(n, v, KAFKA_SECURITY_PROTOCOLS))
        mechanism = None
        username = password = None
        if protocol.startswith("SASL"):
            mechanism = get("VIGIL_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512",
                            lambda n, v: _parse_choice(n, v, KAFKA_SASL_MECHANISMS))
            username = get("VIGIL_KAFKA_SASL_USERNAME", None)
            password = get("VIGIL_KAFKA_SASL_PASSWORD", None)
        credentials_dir = source.get("VIGIL_KAFKA_TENANT_CREDENTIALS_DIR") or None
        kafka = KafkaSettings(bootstrap=bootstrap, host=host, port=port, security_protocol=protocol,
                              sasl_mechanism=mechanism, sasl_username=username, sasl_password=password,
                              ssl_cafile=source.get("VIGIL_KAFKA_SSL_CAFILE") or None,
                              tenant_credentials_dir=Path(credentials_dir) if credentials_dir else None)
        state_dir = Path(get("VIGIL_STATE_DIR", ".vigil")).expanduser().resolve()
        return cls(
            environment=get("VIGIL_ENV", "dev", lambda n, v: _parse_choice(n, v, ENVIRONMENTS)),
            state_dir=state_dir,
            tenants_file=Path(get("VIGIL_TENANTS_FILE", "tenants.toml")).expanduser().resolve(),
            kafka=kafka,
            redis_url=get("VIGIL_REDIS_URL", "redis://127.0.0.1:6379/0",
                          lambda n, v: _parse_url(n, v, ("redis", "rediss"))),
            postgres_dsn=get("VIGIL_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/vigil",
                             lambda n, v: _parse_url(n, v, ("postgresql", "postgres"))),
            ehr_url=get("VIGIL_EHR_URL", "http://127.0.0.1:8080",
                        lambda n, v: _parse_url(n, v, ("http", "https"))).rstrip("/"),
            log_level=get("VIGIL_LOG_LEVEL", "info", lambda n, v: _parse_choice(n, v.lower(), LOG_LEVELS)),
            default_partitions=get("VIGIL_TOPIC_PARTITIONS", "4", _parse_positive_int),
        )


def parse_bool(name: str, raw: str) -> bool:
    """Shared boolean parsing for service-specific settings."""
    return _parse_bool(name, raw)
