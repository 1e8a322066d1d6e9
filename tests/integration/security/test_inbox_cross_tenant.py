"""The clinician inbox pages: a session of tenant A opens nothing of tenant B, a Task id of B
is not found through A's inbox, forms without the session's CSRF token are refused, and a
forged or edited cookie is no session at all. Checked over HTTP against the sandbox."""
from __future__ import annotations

import base64
import json
import re

import httpx

from services.ehr.inbox import session as sessions
from tests.fixtures.adversarial import other_ehr  # noqa: F401  (fixture)
from tests.fixtures.inbox import writeback_task

CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


async def _people(client) -> tuple[str, str]:
    practitioner = (await client.create({"resourceType": "Practitioner",
                                         "name": [{"family": "Oncologist", "given": ["Ada"]}]})).id
    patient = (await client.create({"resourceType": "Patient", "name": [{"family": "Inboxpatient"}]})).id
    return practitioner, patient


async def _sign_in(http: httpx.AsyncClient, secret: str, tenant: str, practitioner: str,
                   task_id: str) -> tuple[str, str]:
    """Sign in to ``tenant``'s inbox with ``practitioner``'s own link: (cookie value, csrf token of
    the page of ``task_id``, one of theirs)."""
    login = await http.get(f"/inbox/{tenant}/login",
                           params={"token": sessions.issue_link(secret, tenant, practitioner)})
    assert login.status_code == 303, login.status_code
    cookie = login.cookies[sessions.COOKIE]
    page = await http.get(f"/inbox/{tenant}/tasks/{task_id}", headers={"Cookie": f"{sessions.COOKIE}={cookie}"})
    return cookie, CSRF.search(page.text).group(1)


async def test_inbox_of_one_tenant_opens_nothing_of_another(ehr_server, ehr_tenant, other_ehr, adversary):
    b_tenant, b_client, _ = other_ehr
    a_tenant = ehr_tenant.tenant
    a_owner, a_patient = await _people(ehr_tenant.client)
    b_owner, b_patient = await _people(b_client)
    a_task = await writeback_task(ehr_tenant.client, owner=a_owner, patient=a_patient)
    b_task = await writeback_task(b_client, owner=b_owner, patient=b_patient, text="Bravo-only note text: "
                                  "grade 3 immune-mediated colitis, seen at the Bravo clinic.")
    secret = ehr_server.admin_secret
    async with httpx.AsyncClient(base_url=ehr_server.url, timeout=15, follow_redirects=False) as http:
        a_cookie, a_csrf = await _sign_in(http, secret, a_tenant, a_owner, a_task["id"])
        as_a = {"Cookie": f"{sessions.COOKIE}={a_cookie}"}
        mine = await http.get(f"/inbox/{a_tenant}/tasks/{a_task['id']}", headers=as_a)
        assert mine.status_code == 200 and "immune-mediated colitis" in mine.text  # the control case

        response = await http.get(f"/inbox/{b_tenant}", headers=as_a)
        adversary.check("inbox: tenant A's session cookie on B's inbox", response.status_code == 401
                        and "Bravo" not in response.text, f"HTTP {response.status_code}")
        response = await http.get(f"/inbox/{b_tenant}/tasks/{b_task['id']}", headers=as_a)
        adversary.check("inbox: tenant A's session cookie on B's task page", response.status_code == 401
                        and "Bravo" not in response.text, f"HTTP {response.status_code}")
        response = await http.get(f"/inbox/{a_tenant}/tasks/{b_task['id']}", headers=as_a)
        adversary.check("inbox: B's Task id through A's inbox", response.status_code == 404
                        and "Bravo" not in response.text, f"HTTP {response.status_code}")
        response = await http.post(f"/inbox/{a_tenant}/tasks/{b_task['id']}/accept", headers=as_a,
                                   data={"csrf": a_csrf, "version": "1"})
        adversary.check("inbox: accept B's Task id through A's inbox", response.status_code == 404,
                        f"HTTP {response.status_code}")
        response = await http.post(f"/inbox/{b_tenant}/tasks/{b_task['id']}/override", headers=as_a,
                                   data={"csrf": a_csrf, "version": "1", "reason": "not-irae", "comment": "x"})
        adversary.check("inbox: override on B's inbox with A's cookie and CSRF token", response.status_code == 401,
                        f"HTTP {response.status_code}")
        response = await http.post(f"/inbox/{a_tenant}/practitioner", headers=as_a,
                                   data={"csrf": a_csrf, "practitioner": b_owner})
        adversary.check("inbox: choose another practitioner (no picker: the session is bound)",
                        response.status_code in (404, 405), f"HTTP {response.status_code}")

        response = await http.post(f"/inbox/{a_tenant}/tasks/{a_task['id']}/accept", headers=as_a,
                                   data={"version": "1"})
        adversary.check("inbox: CSRF-less POST (accept)", response.status_code == 403, f"HTTP {response.status_code}")
        response = await http.post(f"/inbox/{a_tenant}/tasks/{a_task['id']}/override", headers=as_a,
                                   data={"csrf": "0" * 64, "version": "1", "reason": "not-irae"})
        adversary.check("inbox: POST with a made-up CSRF token (override)", response.status_code == 403,
                        f"HTTP {response.status_code}")

        body, _, signature = a_cookie.rpartition(".")
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        edited = base64.urlsafe_b64encode(json.dumps({**claims, "t": b_tenant, "p": b_owner},
                                                     separators=(",", ":")).encode()).decode()
        response = await http.get(f"/inbox/{b_tenant}", headers={"Cookie": f"{sessions.COOKIE}={edited}.{signature}"})
        adversary.check("inbox: A's cookie with its tenant edited to B (signature kept)", response.status_code == 401,
                        f"HTTP {response.status_code}")
        forged = sessions.encode("guessed-admin-secret-0000", sessions.Session(b_tenant, b_owner, "n" * 32,
                                                                               claims["e"]))
        response = await http.get(f"/inbox/{b_tenant}/tasks/{b_task['id']}",
                                  headers={"Cookie": f"{sessions.COOKIE}={forged}"})
        adversary.check("inbox: cookie forged with a guessed key", response.status_code == 401,
                        f"HTTP {response.status_code}")
        response = await http.get(f"/inbox/{b_tenant}/login",
                                  params={"token": sessions.issue_link(secret, a_tenant, a_owner)})
        adversary.check("inbox: A's login link token on B's inbox", response.status_code == 401
                        and sessions.COOKIE not in response.cookies, f"HTTP {response.status_code}")

    for client, task in ((ehr_tenant.client, a_task), (b_client, b_task)):
        after = await client.read("Task", task["id"])
        assert after["status"] == "requested" and after["meta"]["versionId"] == "1", after["status"]
