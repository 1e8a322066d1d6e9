"""gRPC settings of a process: service addresses, TLS material and token settings (``from_env``)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import grpc

from services.core.config import ConfigError
from services.core.tokens import TokenSettings

TLS_MODES = ("off", "tls", "mtls")
DEFAULT_ADDRESSES = {"inference": "127.0.0.1:50061", "tools": "127.0.0.1:50062", "control": "127.0.0.1:50063"}
#: Largest message either side accepts: a long note (a few hundred kB of UTF-8) fits many times over.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MESSAGE_OPTIONS = (("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                   ("grpc.max_send_message_length", MAX_MESSAGE_BYTES))


@dataclass(frozen=True)
class GrpcSettings:
    environment: str
    addresses: Mapping[str, str]
    tls: str = "off"
    cert_chain: bytes | None = field(default=None, repr=False)
    private_key: bytes | None = field(default=None, repr=False)
    ca_bundle: bytes | None = field(default=None, repr=False)
    server_name: str | None = None
    health_port: int | None = None
    tokens: TokenSettings = field(default_factory=TokenSettings.for_tests, repr=False)

    def address(self, service: str) -> str:
        try:
            return self.addresses[service]
        except KeyError:
            raise ConfigError(f"no address for gRPC service {service!r}; set VIGIL_GRPC_{service.upper()}_ADDR") \
                from None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "GrpcSettings":
        source = os.environ if env is None else env
        environment = source.get("VIGIL_ENV") or "dev"
        addresses = dict(DEFAULT_ADDRESSES)
        for name in list(DEFAULT_ADDRESSES):
            raw = source.get(f"VIGIL_GRPC_{name.upper()}_ADDR")
            if raw:
                host, sep, port = raw.rpartition(":")
                if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                    raise ConfigError(f"VIGIL_GRPC_{name.upper()}_ADDR={raw!r}: expected HOST:PORT")
                addresses[name] = raw
        tls = source.get("VIGIL_GRPC_TLS") or "off"
        if tls not in TLS_MODES:
            raise ConfigError(f"VIGIL_GRPC_TLS={tls!r}: expected one of {', '.join(TLS_MODES)}")
        if tls == "off" and environment == "prod":
            raise ConfigError("VIGIL_GRPC_TLS=off is refused when VIGIL_ENV=prod; use tls or mtls")

        def read(name: str, required: bool) -> bytes | None:
            path = source.get(name)
            if not path:
                if required:
                    raise ConfigError(f"{name} is required when VIGIL_GRPC_TLS={tls}")
                return None
            try:
                return Path(path).expanduser().read_bytes()
            except OSError as exc:
                raise ConfigError(f"{name}={path!r}: cannot read ({exc.strerror})") from None

        raw_health = source.get("VIGIL_GRPC_HEALTH_PORT") or ""
        if raw_health and (not raw_health.isdigit() or not 0 < int(raw_health) < 65536):
            raise ConfigError(f"VIGIL_GRPC_HEALTH_PORT={raw_health!r}: expected a port number")
        cert = read("VIGIL_GRPC_TLS_CERT_FILE", tls == "mtls")
        key = read("VIGIL_GRPC_TLS_KEY_FILE", tls == "mtls" or cert is not None)
        ca = read("VIGIL_GRPC_TLS_CA_FILE", tls == "mtls")
        return cls(environment=environment, addresses=addresses, tls=tls, cert_chain=cert, private_key=key,
                   ca_bundle=ca, server_name=source.get("VIGIL_GRPC_TLS_SERVER_NAME") or None,
                   health_port=int(raw_health) if raw_health else None,
                   tokens=TokenSettings.from_env(source))

    def server_credentials(self) -> grpc.ServerCredentials | None:
        if self.tls == "off":
            return None
        if not self.cert_chain or not self.private_key:
            raise ConfigError("serving with TLS needs VIGIL_GRPC_TLS_CERT_FILE and VIGIL_GRPC_TLS_KEY_FILE")
        return grpc.ssl_server_credentials([(self.private_key, self.cert_chain)],
                                           root_certificates=self.ca_bundle if self.tls == "mtls" else None,
                                           require_client_auth=self.tls == "mtls")

    def channel_credentials(self) -> grpc.ChannelCredentials | None:
        if self.tls == "off":
            return None
        if self.tls == "mtls":
            return grpc.ssl_channel_credentials(root_certificates=self.ca_bundle, private_key=self.private_key,
                                                certificate_chain=self.cert_chain)
        return grpc.ssl_channel_credentials(root_certificates=self.ca_bundle)
