"""Inbox sign-in per practitioner: a link is signed, names one practitioner, expires after 15
minutes and works once; the session it opens acts only as that practitioner (another
practitioner's Task is 403, to see or to act on). Links come from `vigil ehr inbox-link` (a
subprocess against the running sandbox) or the admin API. Checked over HTTP."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from services.ehr.inbox import session as sessions
from tests.fixtures.inbox import writeback_task

REPO = Path(__file__).resolve().parents[3]
CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


def _inbox_link(server, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "VIGIL_EHR_URL": server.url, "VIGIL_EHR_ADMIN_SECRET": server.admin_secret}
    return subprocess.run([sys.executable, "-m", "services.cli", "ehr", "inbox-link", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


async def _people(client) -> tuple[str, str, str]:
    ada = (await client.create({"resourceType": "Practitioner", "name": [{"family": "Okafor", "given": ["Ada"]}]})).id
    ben = (await client.create({"resourceType": "Practitioner", "name": [{"family": "Brandt", "given": ["Ben"]}]})).id
    patient = (await client.create({"resourceType": "Patient", "name": [{"family": "Linkpatient"}]})).id
    return ada, ben, patient


def _token(url: str) -> str:
    return re.search(r"[?&]token=([^&\s]+)", url).group(1)


async def test_cli_link_signs_in_one_practitioner_once_and_binds_the_session(ehr_server, ehr_tenant, adversary):
    tenant, client = ehr_tenant.tenant, ehr_tenant.client
    ada, ben, patient = await _people(client)
    ada_task = await writeback_task(client, owner=ada, patient=patient)
    ben_task = await writeback_task(client, owner=ben, patient=patient, quote="7 stools per day")

    issued = await asyncio.to_thread(_inbox_link, ehr_server, "--tenant", tenant, "--practitioner", ada)
    assert issued.returncode == 0, issued.stderr
    url = issued.stdout.strip()
    assert url.startswith(f"{ehr_server.url}/inbox/{tenant}/login?token=") and "one use" in issued.stderr
    async with httpx.AsyncClient(base_url=ehr_server.url, timeout=15, follow_redirects=False) as http:
        login = await http.get(url)
        assert login.status_code == 303
        cookie = {"Cookie": f"{sessions.COOKIE}={login.cookies[sessions.COOKIE]}"}
        listing = await http.get(f"/inbox/{tenant}", headers=cookie)
        assert listing.status_code == 200 and "Okafor" in listing.text
        assert f"/tasks/{ada_task['id']}" in listing.text and f"/tasks/{ben_task['id']}" not in listing.text
        page = await http.get(f"/inbox/{tenant}/tasks/{ada_task['id']}", headers=cookie)
        csrf = CSRF.search(page.text).group(1)

        again = await http.get(url)
        adversary.check("inbox: a sign-in link used a second time", again.status_code == 401
                        and sessions.COOKIE not in again.cookies, f"HTTP {again.status_code}")
        other = await http.get(f"/inbox/{tenant}/tasks/{ben_task['id']}", headers=cookie)
        adversary.check("inbox: Ada's session opens Ben's Task", other.status_code == 403
                        and "7 stools per day" not in other.text, f"HTTP {other.status_code}")
        for decision, form in (("accept", {}), ("override", {"reason": "other-cause", "comment": "x"})):
            acted = await http.post(f"/inbox/{tenant}/tasks/{ben_task['id']}/{decision}", headers=cookie,
                                    data={"csrf": csrf, "version": "1", **form})
            adversary.check(f"inbox: Ada's session {decision}s Ben's Task", acted.status_code == 403,
                            f"HTTP {acted.status_code}")
        picked = await http.post(f"/inbox/{tenant}/practitioner", headers=cookie,
                                 data={"csrf": csrf, "practitioner": ben})
        adversary.check("inbox: switch the session to another practitioner", picked.status_code in (404, 405),
                        f"HTTP {picked.status_code}")
        mine = await http.post(f"/inbox/{tenant}/tasks/{ada_task['id']}/accept", headers=cookie,
                               data={"csrf": csrf, "version": "1"})
        assert mine.status_code == 303  # the control case: her own Task
    assert (await client.read("Task", ben_task["id"]))["status"] == "requested"
    accepted = await client.read("Task", ada_task["id"])
    assert accepted["status"] == "completed" and accepted["note"][-1]["authorReference"] == {
        "reference": f"Practitioner/{ada}"}


async def test_expired_edited_foreign_and_old_style_links_are_refused(ehr_server, ehr_tenant, adversary):
    tenant, secret = ehr_tenant.tenant, ehr_server.admin_secret
    ada, ben, _ = await _people(ehr_tenant.client)
    expired = sessions.issue_link(secret, tenant, ada, now=time.time() - sessions.LINK_LIFETIME_S - 1)
    body, _, signature = sessions.issue_link(secret, tenant, ada).rpartition(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    edited = base64.urlsafe_b64encode(json.dumps({**claims, "p": ben}).encode()).decode().rstrip("=")
    guessed = sessions.issue_link("guessed-admin-secret-0000", tenant, ada)
    nobody = sessions.issue_link(secret, tenant, "no-such-practitioner")
    # the former per-tenant, never-expiring login token (an HMAC of the tenant id)
    old_key = hmac.new(secret.encode(), b"vigil-ehr-inbox/login", hashlib.sha256).digest()
    old_style = hmac.new(old_key, tenant.encode(), hashlib.sha256).hexdigest()[:40]
    async with httpx.AsyncClient(base_url=ehr_server.url, timeout=15, follow_redirects=False) as http:
        for what, token in (("expired (15 min + 1 s)", expired), ("practitioner edited, signature kept",
                            f"{edited}.{signature}"), ("signed with a guessed key", guessed),
                            ("naming no practitioner of the EHR", nobody), ("the old per-tenant token", old_style)):
            response = await http.get(f"/inbox/{tenant}/login", params={"token": token})
            adversary.check(f"inbox: sign-in link {what}", response.status_code == 401
                            and sessions.COOKIE not in response.cookies, f"HTTP {response.status_code}")
    unknown = await asyncio.to_thread(_inbox_link, ehr_server, "--tenant", tenant, "--practitioner", "nobody-here")
    assert unknown.returncode == 1 and "practitioner" in unknown.stderr
    malformed = await asyncio.to_thread(_inbox_link, ehr_server, "--tenant", tenant, "--practitioner", "a/b")
    assert malformed.returncode == 2


async def test_admin_api_link_lifetime_is_bounded(ehr_server, ehr_tenant):
    ada, _, _ = await _people(ehr_tenant.client)
    async with ehr_server.admin() as admin:
        link = await admin.inbox_link(ehr_tenant.tenant, ada, lifetime_s=60)
        parsed = sessions.read_link(ehr_server.admin_secret, ehr_tenant.tenant, _token(link["url"]))
        assert parsed.practitioner == ada and 50 <= parsed.expires - time.time() <= 61
        default = await admin.inbox_link(ehr_tenant.tenant, ada)
        left = sessions.read_link(ehr_server.admin_secret, ehr_tenant.tenant, _token(default["url"])).expires - time.time()
        assert sessions.LINK_LIFETIME_S - 10 <= left <= sessions.LINK_LIFETIME_S
    async with httpx.AsyncClient(base_url=ehr_server.url, timeout=15) as http:
        too_long = await http.post(f"/admin/tenants/{ehr_tenant.tenant}/inbox-links",
                                   headers={"Authorization": f"Bearer {ehr_server.admin_secret}"},
                                   json={"practitioner": ada, "lifetime_s": 86400})
        assert too_long.status_code == 400 and too_long.json()["resourceType"] == "OperationOutcome"
