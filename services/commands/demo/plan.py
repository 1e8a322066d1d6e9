"""Where the demo puts things: its state folder, its tenant registry, its ports, and the
environment every service process it starts receives.

The demo never touches the user's ``tenants.toml``: its registry, SMART keys and service logs
live under ``<state dir>/<name>/`` (``.vigil/demo`` by default). The platform secrets are the
development defaults of ``services.core.secrets`` / ``services.core.tokens`` (usable only with
VIGIL_ENV dev or test), so a fresh machine needs no configuration.
"""
from __future__ import annotations

import importlib.util
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from services.core.config import ConfigError, Settings
from services.core.lanes import BATCH_NICE
from services.inference.rules.workers import VARIABLE as RULES_WORKERS

#: Ports are ``base + offset``; the demo, the chaos run and the benchmark use different bases so
#: a kept demo and a benchmark can run side by side.
DEMO_PORT_BASE = 18100
PORT_OFFSETS = {"ingest-http": 0, "ingest-mllp": 1, "inference": 2, "tools": 3, "control": 4, "console": 5,
                "extraction": 10, "triage": 11, "writeback": 12, "scheduling": 13, "monitor": 14, "hl7": 15,
                "hl7out": 16, "inference-batch": 6, "tools-batch": 7, "extraction-batch": 17, "triage-batch": 18,
                "cdshooks": 19, "engine": 20}


@dataclass(frozen=True)
class ServiceDef:
    name: str       # also the package: services.<name>.app, unless ``module`` names another
    kind: str       # grpc | stage | http
    port_key: str   # which port (PORT_OFFSETS) its health answers on
    required: bool = True  # the notes -> Tasks path needs it; others are reported when they fail
    module: str = ""  # the module run with ``python -m`` (default ``services.<name>.app``)
    args: tuple[str, ...] = ()  # command-line arguments after the module (e.g. ``--lane batch``)
    nice: int = 0  # CPU priority decrement of the process (the batch lane's servers run below real time)
    batch: bool = False  # part of the batch lane: started only when a pipeline asks for it


    @property
    def app_module(self) -> str:
        return self.module or f"services.{self.name}.app"


#: Every service the pipeline runs, in start order (dependencies first).
SERVICES: list[ServiceDef] = [
    ServiceDef("inference", "grpc", "inference"),
    ServiceDef("tools", "grpc", "tools"),
    ServiceDef("ingest", "http", "ingest-http"),
    ServiceDef("hl7", "stage", "hl7", required=False, module="services.ingest.hl7stage.app"),
    ServiceDef("extraction", "stage", "extraction"),
    ServiceDef("triage", "stage", "triage"),
    ServiceDef("writeback", "stage", "writeback"),
    ServiceDef("hl7out", "stage", "hl7out", required=False),
    ServiceDef("cdshooks", "http", "cdshooks", required=False),
    ServiceDef("scheduling", "stage", "scheduling", required=False),
    ServiceDef("monitor", "stage", "monitor", required=False),
    # required: the demo sets each tenant's mode and pilot list through it (it alone writes modes)
    ServiceDef("control", "grpc", "control", module="services.commands.control_service"),
    # The batch lane (services/core/lanes.py): its own stage instances and its own gRPC servers, at a
    # lower CPU priority, so a backfill never sits in front of a real-time note.
    ServiceDef("inference-batch", "grpc", "inference-batch", required=False, module="services.inference.app",
               nice=BATCH_NICE, batch=True),
    ServiceDef("tools-batch", "grpc", "tools-batch", required=False, module="services.tools.app", nice=BATCH_NICE,
               batch=True),
    ServiceDef("extraction-batch", "stage", "extraction-batch", required=False, module="services.extraction.app",
               args=("--lane", "batch"), batch=True),
    ServiceDef("triage-batch", "stage", "triage-batch", required=False, module="services.triage.app",
               args=("--lane", "batch"), batch=True),
]
#: Services whose inference (tools) server is the batch lane's own: the batch lane's gRPC servers
#: themselves (they listen there) and the batch extraction (it calls them).
BATCH_INFERENCE_CLIENTS = ("inference-batch", "extraction-batch")
BATCH_TOOLS_CLIENTS = ("tools-batch", "extraction-batch")


def available(service: ServiceDef) -> bool:
    """A service whose app module exists in this checkout."""
    try:
        return importlib.util.find_spec(service.app_module) is not None
    except ModuleNotFoundError:
        return False


def console_available() -> bool:
    try:
        return importlib.util.find_spec("services.control.console.app") is not None
    except ModuleNotFoundError:
        return False


@dataclass(frozen=True)
class DemoPlan:
    name: str
    settings: Settings               # tenants_file points into the plan's folder
    port_base: int
    extra_env: dict = field(default_factory=dict)

    @classmethod
    def create(cls, name: str = "demo", port_base: int | None = None, settings: Settings | None = None,
               extra_env: dict | None = None) -> "DemoPlan":
        base = settings or Settings.from_env()
        raw = os.environ.get("VIGIL_DEMO_PORT_BASE", "") if port_base is None else str(port_base)
        port_base = DEMO_PORT_BASE
        if raw:
            if not raw.isdigit() or not 1024 <= int(raw) <= 65000:
                raise ConfigError(f"VIGIL_DEMO_PORT_BASE={raw!r}: expected a port between 1024 and 65000")
            port_base = int(raw)
        folder = base.state_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        return cls(name, base.with_overrides(tenants_file=folder / "tenants.toml"), port_base, dict(extra_env or {}))

    @property
    def folder(self) -> Path:
        return self.settings.state_dir / self.name

    @property
    def keys_dir(self) -> Path:
        path = self.folder / "keys"
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path

    @property
    def logs_dir(self) -> Path:
        path = self.folder / "logs"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def port(self, key: str) -> int:
        return self.port_base + PORT_OFFSETS[key]

    @property
    def ingest_url(self) -> str:
        return f"http://127.0.0.1:{self.port('ingest-http')}"

    @property
    def cds_url(self) -> str:
        return f"http://127.0.0.1:{self.port('cdshooks')}"

    @property
    def console_url(self) -> str:
        return f"http://127.0.0.1:{self.port('console')}"

    def service_env(self, service: ServiceDef) -> dict[str, str]:
        """The environment of one service process."""
        s = self.settings
        env = {**os.environ, **self.extra_env,
               "VIGIL_STATE_DIR": str(s.state_dir), "VIGIL_TENANTS_FILE": str(s.tenants_file),
               "VIGIL_KAFKA_BOOTSTRAP": s.kafka.bootstrap, "VIGIL_REDIS_URL": s.redis_url,
               "VIGIL_POSTGRES_DSN": s.postgres_dsn, "VIGIL_EHR_URL": s.ehr_url,
               "VIGIL_GRPC_INFERENCE_ADDR": f"127.0.0.1:{self.port('inference')}",
               "VIGIL_GRPC_TOOLS_ADDR": f"127.0.0.1:{self.port('tools')}",
               "VIGIL_GRPC_CONTROL_ADDR": f"127.0.0.1:{self.port('control')}",
               "VIGIL_INGEST_HTTP_HOST": "127.0.0.1", "VIGIL_INGEST_HTTP_PORT": str(self.port("ingest-http")),
               "VIGIL_INGEST_MLLP_HOST": "127.0.0.1", "VIGIL_INGEST_MLLP_PORT": str(self.port("ingest-mllp")),
               "VIGIL_CDS_HOST": "127.0.0.1", "VIGIL_CDS_PORT": str(self.port("cdshooks")),
               "VIGIL_CONTROL_CONSOLE_ADDR": (f"127.0.0.1:{self.port('console')}" if console_available()
                                              else "off"),
               "PYTHONUNBUFFERED": "1"}
        if service.kind == "stage":
            env["VIGIL_METRICS_PORT"] = str(self.port(service.port_key))
        if service.name == "inference-batch":  # a backfill uses every core (niced: real time comes first)
            env.setdefault(RULES_WORKERS, "auto")
        if service.name in BATCH_INFERENCE_CLIENTS:
            env["VIGIL_GRPC_INFERENCE_ADDR"] = f"127.0.0.1:{self.port('inference-batch')}"
        if service.name in BATCH_TOOLS_CLIENTS:
            env["VIGIL_GRPC_TOOLS_ADDR"] = f"127.0.0.1:{self.port('tools-batch')}"
        return env

    def busy_ports(self) -> list[int]:
        """Ports of this plan already taken by something (checked before starting anything)."""
        taken = []
        for key in PORT_OFFSETS:
            with socket.socket() as sock:
                sock.settimeout(0.3)
                if sock.connect_ex(("127.0.0.1", self.port(key))) == 0:
                    taken.append(self.port(key))
        return taken
