"""Shared fixtures: a real broker, Redis and PostgreSQL for the whole session, and a fresh
tenant id per test so tests never see each other's data.

The stack is the one `vigil dev` runs (started here only where nothing answers, and stopped
at the end only if this session started it). ``VIGIL_TEST_BACKEND=testcontainers`` runs the
same tests against Apache Kafka, Redis and PostgreSQL containers where Docker exists.

Parallel runs (``pytest -n N``, pytest-xdist): the workers share one stack. A worker starts a
missing component under a file lock in the state directory, so only one of them starts it; the
controller stops what the workers started once every worker has finished.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import uuid
from pathlib import Path

BACKEND = os.environ.get("VIGIL_TEST_BACKEND", "embedded")
if BACKEND == "embedded":
    # Tansu holds a consumer group's JoinGroup for about half the session timeout, in whole
    # seconds: 2 s instead of 3 s for every stage a test starts. (2000 would make it 1 s, but a
    # loaded 2-core machine then missed heartbeats for 2 s and a group rebalanced mid-test.) Set
    # before any tuning is made; stage processes a test starts inherit it. Apache Kafka refuses
    # sessions under group.min.session.timeout.ms (6 s), hence the embedded stack only.
    os.environ.setdefault("VIGIL_KAFKA_SESSION_TIMEOUT_MS", "4000")

import pytest  # noqa: E402

from services.core import devstack
from services.core.config import Settings
from services.core.tenancy import Tenant

#: Fixture plugins shared across areas. pytest only accepts ``pytest_plugins`` in the top-level
#: conftest (a sub-folder conftest that declares it fails collection of the whole suite).
#: Every fixture plugin of the suite is listed here, and only here.
pytest_plugins = [
    "tests.fixtures.ehr",
    "tests.fixtures.subscriptions",
    "tests.fixtures.security",
    "tests.fixtures.fake_llm",
    "tests.fixtures.control",
    "tests.fixtures.writeback",
]

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def _docker_available() -> str | None:
    try:
        import docker

        docker.from_env().ping()
        return None
    except Exception as exc:  # any failure means: no engine here
        return f"Docker engine not reachable ({type(exc).__name__})"


def _containers_settings(request) -> Settings:
    from testcontainers.kafka import KafkaContainer
    from testcontainers.postgres import PostgresContainer
    from testcontainers.redis import RedisContainer

    kafka = KafkaContainer().start()
    redis_c = RedisContainer().start()
    pg = PostgresContainer("postgres:16").start()
    request.addfinalizer(kafka.stop)
    request.addfinalizer(redis_c.stop)
    request.addfinalizer(pg.stop)
    env = dict(os.environ)
    env.update(VIGIL_KAFKA_BOOTSTRAP=kafka.get_bootstrap_server(),
               VIGIL_REDIS_URL=f"redis://{redis_c.get_container_host_ip()}:{redis_c.get_exposed_port(6379)}/0",
               VIGIL_POSTGRES_DSN=pg.get_connection_url().replace("postgresql+psycopg2", "postgresql"))
    return Settings.from_env(env)


@pytest.fixture(scope="session")
def base_settings(tmp_path_factory) -> Settings:
    env = dict(os.environ)
    env.setdefault("VIGIL_STATE_DIR", str(REPO / ".vigil"))
    env["VIGIL_TENANTS_FILE"] = str(tmp_path_factory.mktemp("registry") / "tenants.toml")
    return Settings.from_env(env)


@contextlib.contextmanager
def _stack_lock(state_dir: Path):
    """One process at a time checks and starts the stack (parallel workers, concurrent runs)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / "devstack.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _is_worker(config) -> bool:
    return hasattr(config, "workerinput")


@pytest.fixture(scope="session")
def stack(request, base_settings) -> Settings:
    """Settings pointing at a running broker, Redis and PostgreSQL."""
    if BACKEND == "testcontainers":
        reason = _docker_available()
        if reason:
            pytest.skip(f"VIGIL_TEST_BACKEND=testcontainers: {reason}")
        return _containers_settings(request)
    with _stack_lock(base_settings.state_dir):
        before = {row.component: row.state for row in devstack.status(base_settings)}
        devstack.up(base_settings, only=["kafka", "redis", "postgres"])
    started = [name for name in ("kafka", "redis", "postgres") if before.get(name) == "down"]
    config = request.config
    if _is_worker(config):  # other workers may still use it: the controller stops it at the end
        config.workeroutput["vigil_started"] = started
        return base_settings

    def stop_ours() -> None:
        if started:
            devstack.down(base_settings, only=started)

    request.addfinalizer(stop_ours)
    return base_settings


_STARTED_BY_WORKERS: set[str] = set()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """Controller of a parallel run: note which components a worker started."""
    _STARTED_BY_WORKERS.update(getattr(node, "workeroutput", {}).get("vigil_started", ()))


def pytest_sessionfinish(session, exitstatus) -> None:
    if _STARTED_BY_WORKERS and not _is_worker(session.config):
        env = dict(os.environ)
        env.setdefault("VIGIL_STATE_DIR", str(REPO / ".vigil"))
        devstack.down(Settings.from_env(env), only=sorted(_STARTED_BY_WORKERS))


@pytest.fixture(scope="session")
def topic_cleanup(stack):
    from tests.fixtures.topic_cleanup import TopicCleanup

    cleanup = TopicCleanup(stack)
    yield cleanup
    cleanup.close()


@pytest.fixture
def tenant_id(request) -> str:
    tenant = "t" + uuid.uuid4().hex[:12]
    # A test on the broker: its tenant's topics are deleted after it (tests/fixtures/topic_cleanup.py).
    uses_broker = BACKEND == "embedded" and "stack" in request.fixturenames
    cleanup = request.getfixturevalue("topic_cleanup") if uses_broker else None
    yield tenant
    if cleanup is not None:
        cleanup.forget(tenant)


@pytest.fixture
def tenant(tenant_id) -> Tenant:
    return Tenant(id=tenant_id, display_name=f"Test {tenant_id}", partitions=4, mode="active",
                  hl7_facilities=(tenant_id.upper(),))


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"shared test data not found at {SHARED_DATA}")
    return SHARED_DATA
