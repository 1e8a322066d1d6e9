"""Ingest settings, read once from the environment (frozen; a bad value stops start-up)."""
from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from services.core.config import ConfigError
from services.ingest.mllp.server import IDLE_TIMEOUT_S, MAX_BLOCK_BYTES, MAX_CONNECTIONS, MllpLimits


def _port(name: str, raw: str) -> int:
    if not raw.isdigit() or not 0 <= int(raw) < 65536:
        raise ConfigError(f"{name}={raw!r}: expected a port number (0 = any free port)")
    return int(raw)


def _positive(name: str, raw: str, kind=int):
    try:
        value = kind(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfigError(f"{name}={raw!r}: expected a positive number")
    return value


def _file(name: str, raw: str) -> Path | None:
    if not raw:
        return None
    path = Path(raw).expanduser()
    if not path.is_file():
        raise ConfigError(f"{name}={raw!r}: file not found")
    return path


@dataclass(frozen=True)
class IngestSettings:
    mllp_host: str
    mllp_port: int
    http_host: str
    http_port: int
    public_url: str  # how the EHR reaches the receiver (Subscription.channel.endpoint base)
    tls_cert: Path | None
    tls_key: Path | None
    watchdog: bool
    mllp_limits: MllpLimits = MllpLimits()
    #: Per-patient polling for tenants whose profile has the ``patient-poll`` trigger (VIGIL_INGEST_POLL).
    poll: bool = True
    #: VIGIL_INGEST_PUBLIC_URL was given (not derived from the bind address): EHRs elsewhere can reach it.
    public_url_set: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "IngestSettings":
        src = os.environ if env is None else env
        http_host = src.get("VIGIL_INGEST_HTTP_HOST", "127.0.0.1")
        http_port = _port("VIGIL_INGEST_HTTP_PORT", src.get("VIGIL_INGEST_HTTP_PORT", "8090"))
        cert = _file("VIGIL_INGEST_TLS_CERT", src.get("VIGIL_INGEST_TLS_CERT", ""))
        key = _file("VIGIL_INGEST_TLS_KEY", src.get("VIGIL_INGEST_TLS_KEY", ""))
        if (cert is None) != (key is None):
            raise ConfigError("VIGIL_INGEST_TLS_CERT and VIGIL_INGEST_TLS_KEY must be set together")
        public = src.get("VIGIL_INGEST_PUBLIC_URL", "") or f"http://{http_host}:{http_port}"
        if not public.startswith(("http://", "https://")):
            raise ConfigError(f"VIGIL_INGEST_PUBLIC_URL={public!r}: expected an http(s) URL")
        watchdog = src.get("VIGIL_INGEST_WATCHDOG", "true").strip().lower()
        if watchdog not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigError(f"VIGIL_INGEST_WATCHDOG={watchdog!r}: expected true or false")
        poll = src.get("VIGIL_INGEST_POLL", "true").strip().lower()
        if poll not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigError(f"VIGIL_INGEST_POLL={poll!r}: expected true or false")
        max_bytes = _positive("VIGIL_INGEST_MLLP_MAX_MESSAGE_BYTES",
                              src.get("VIGIL_INGEST_MLLP_MAX_MESSAGE_BYTES", str(MAX_BLOCK_BYTES)))
        if max_bytes < 1024:
            raise ConfigError(f"VIGIL_INGEST_MLLP_MAX_MESSAGE_BYTES={max_bytes}: at least 1024")
        limits = MllpLimits(
            max_message_bytes=max_bytes,
            idle_timeout_s=_positive("VIGIL_INGEST_MLLP_IDLE_TIMEOUT_S",
                                     src.get("VIGIL_INGEST_MLLP_IDLE_TIMEOUT_S", str(IDLE_TIMEOUT_S)), float),
            max_connections=_positive("VIGIL_INGEST_MLLP_MAX_CONNECTIONS",
                                      src.get("VIGIL_INGEST_MLLP_MAX_CONNECTIONS", str(MAX_CONNECTIONS))))
        return cls(mllp_host=src.get("VIGIL_INGEST_MLLP_HOST", "127.0.0.1"),
                   mllp_port=_port("VIGIL_INGEST_MLLP_PORT", src.get("VIGIL_INGEST_MLLP_PORT", "2575")),
                   http_host=http_host, http_port=http_port, public_url=public.rstrip("/"),
                   tls_cert=cert, tls_key=key, watchdog=watchdog in ("true", "1", "yes"), mllp_limits=limits,
                   poll=poll in ("true", "1", "yes"),
                   public_url_set=bool(src.get("VIGIL_INGEST_PUBLIC_URL", "")))

    def ssl_context(self) -> ssl.SSLContext | None:
        """TLS for the MLLP listener (and the HTTP receiver) when a certificate is configured."""
        if self.tls_cert is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.tls_cert, self.tls_key)
        return context
