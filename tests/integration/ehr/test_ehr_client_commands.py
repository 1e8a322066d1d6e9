"""`vigil ehr client add | list | revoke`, each run in its own process against a running sandbox.

Revocation takes effect at once: the client's next token request and the next call with an
access token it already holds are both refused (401)."""
from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from services.core.errors import UnauthenticatedError
from services.core.fhir import FhirClient, SmartCredentials

REPO = Path(__file__).resolve().parents[3]


def _vigil(server, *args: str, secret: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "VIGIL_EHR_URL": server.url, "VIGIL_EHR_ADMIN_SECRET": secret or server.admin_secret}
    return subprocess.run([sys.executable, "-m", "services.cli", "ehr", "client", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


async def vigil(server, *args: str, secret: str | None = None) -> subprocess.CompletedProcess:
    return await asyncio.to_thread(_vigil, server, *args, secret=secret)


def _credentials(added: dict, key_file: Path) -> SmartCredentials:
    return SmartCredentials(client_id=added["client_id"], private_key_pem=key_file.read_text(), alg="RS384",
                            kid=added["kid"], scope="system/Patient.rs")


async def test_add_list_revoke(ehr_tenant, tmp_path):
    server, tenant = ehr_tenant.server, ehr_tenant.tenant
    patient = (await ehr_tenant.client.create({"resourceType": "Patient", "name": [{"family": "Clientcheck"}]})).id
    key_file = tmp_path / "cli-app.pem"

    add = await vigil(server, "add", "cli-app", "--tenant", tenant, "--scope", "system/Patient.rs",
                      "--key-out", str(key_file))
    assert add.returncode == 0, add.stderr
    added = json.loads(add.stdout)
    assert added["client_id"] == "cli-app" and added["scopes"] == ["system/Patient.rs"]
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and "PRIVATE KEY" in key_file.read_text()

    client = FhirClient(ehr_tenant.base_url, credentials=_credentials(added, key_file))
    await client.start()
    try:
        assert (await client.read("Patient", patient))["id"] == patient
        issued = await client.access_token()
    finally:
        await client.close()

    listed = await vigil(server, "list", "--tenant", tenant, "--json")
    assert listed.returncode == 0, listed.stderr
    by_id = {c["client_id"]: c for c in json.loads(listed.stdout)}
    assert by_id["cli-app"]["revoked_at"] is None and by_id["cli-app"]["kids"] == [added["kid"]]
    assert "vigil-test" in by_id
    table = await vigil(server, "list", "--tenant", tenant)
    assert any(line.startswith("cli-app\tactive\tsystem/Patient.rs") for line in table.stdout.splitlines())

    revoke = await vigil(server, "revoke", "cli-app", "--tenant", tenant)
    assert revoke.returncode == 0 and revoke.stdout.startswith(f"revoked cli-app (tenant {tenant}) at "), revoke.stderr

    async with httpx.AsyncClient(timeout=10) as http:  # the access token issued before the revocation
        refused = await http.get(f"{ehr_tenant.base_url}/Patient/{patient}", headers={"Authorization": f"Bearer {issued}"})
    assert refused.status_code == 401 and refused.json()["resourceType"] == "OperationOutcome"
    assert "revoked" in refused.text
    again = FhirClient(ehr_tenant.base_url, credentials=_credentials(added, key_file))
    try:
        with pytest.raises(UnauthenticatedError):  # the next token request
            await again.start()
            await again.read("Patient", patient)
    finally:
        await again.close()
    assert (await ehr_tenant.client.read("Patient", patient))["id"] == patient  # other clients unaffected

    listed = json.loads((await vigil(server, "list", "--tenant", tenant, "--json")).stdout)
    assert next(c for c in listed if c["client_id"] == "cli-app")["revoked_at"]


async def test_add_with_a_jwks_file_reinstates_a_revoked_client(ehr_tenant, tmp_path):
    server, tenant = ehr_tenant.server, ehr_tenant.tenant
    key_file = tmp_path / "first.pem"
    added = json.loads((await vigil(server, "add", "svc-b", "--tenant", tenant, "--scope", "system/Patient.rs",
                                    "--key-out", str(key_file))).stdout)
    assert (await vigil(server, "revoke", "svc-b", "--tenant", tenant)).returncode == 0
    from services.core.fhir import new_client_key

    pem, jwk = new_client_key("RS384")
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps({"keys": [jwk]}))
    readd = await vigil(server, "add", "svc-b", "--tenant", tenant, "--scope", "system/Patient.rs",
                        "--jwks", str(jwks_file))
    assert readd.returncode == 0, readd.stderr
    client = FhirClient(ehr_tenant.base_url, credentials=SmartCredentials(
        client_id="svc-b", private_key_pem=pem, alg="RS384", kid=jwk["kid"], scope="system/Patient.rs"))
    try:
        await client.start()
        assert isinstance(await client.search("Patient", {"_count": "1"}), list)
    finally:
        await client.close()
    assert added["client_id"] == "svc-b"


async def test_client_command_errors(ehr_tenant, tmp_path):
    server, tenant = ehr_tenant.server, ehr_tenant.tenant
    unknown = await vigil(server, "revoke", "nobody", "--tenant", tenant)
    assert unknown.returncode == 1 and "no such tenant or client" in unknown.stderr
    no_tenant = await vigil(server, "list", "--tenant", "tnosuchtenant1")
    assert no_tenant.returncode == 1
    wrong_secret = await vigil(server, "list", "--tenant", tenant, secret="not-the-admin-secret-at-all")
    assert wrong_secret.returncode == 2
    neither = await vigil(server, "add", "x", "--tenant", tenant)
    assert neither.returncode == 2 and "exactly one of" in neither.stderr
    bad_scope = await vigil(server, "add", "x", "--tenant", tenant, "--scope", "everything",
                            "--key-out", str(tmp_path / "x.pem"))
    assert bad_scope.returncode == 2 and not (tmp_path / "x.pem").exists()
    assert "scope" in bad_scope.stderr
    unreachable = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "services.cli", "ehr", "client", "list",
                                                           "--tenant", tenant], cwd=REPO, capture_output=True,
                                          text=True, timeout=120,
                                          env={**os.environ, "VIGIL_EHR_URL": "http://127.0.0.1:9",
                                               "VIGIL_EHR_ADMIN_SECRET": server.admin_secret})
    assert unreachable.returncode == 1 and "unreachable" in unreachable.stderr
