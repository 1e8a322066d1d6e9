"""The clinician inbox in headless Chromium (Debian's package) driven by Playwright: open the
inbox, open a Task written like writeback writes it, see the highlighted evidence, override it,
and check the FHIR store and the subscription notification."""
from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from services.core.fhir import FhirClient
from services.ehr.inbox import OVERRIDE_SYSTEM, session as inbox_session
from tests.fixtures.inbox import NOTE_TEXT, QUOTE, writeback_task
from tests.fixtures.subscriptions import subscription_resource

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parents[3] / "artifacts" / "screenshots"


def _token(url: str) -> str:
    return url.split("token=", 1)[1]


async def _people(client) -> tuple[str, str]:
    doctor = (await client.create({"resourceType": "Practitioner",
                                   "name": [{"prefix": ["Dr."], "given": ["Ada"], "family": "Okafor"}]})).resource
    patient = (await client.create({"resourceType": "Patient", "name": [{"given": ["Lena"], "family": "Marsh"}],
                                    "birthDate": "1961-04-02"})).resource
    return doctor["id"], patient["id"]


@pytest.mark.skipif(not Path(CHROMIUM).exists() and not shutil.which("chromium"),
                    reason="Debian's chromium is not installed (make browser installs it)")
async def test_override_in_browser_updates_task_and_notifies(ehr_tenant, ehr_server, subscriber):
    from playwright.async_api import async_playwright

    client = ehr_tenant.client
    doctor, patient = await _people(client)
    routine = await writeback_task(client, owner=doctor, patient=patient, priority="routine", grade=1,
                                   quote="pembrolizumab cycle 4")
    task = await writeback_task(client, owner=doctor, patient=patient)
    sub = (await client.create(subscription_resource("task-updated", subscriber.url, content="full-resource",
                                                     filters=[f"Task?owner=Practitioner/{doctor}"]))).resource
    await subscriber.wait_for(lambda: subscriber.of_type("handshake"), what="handshake")
    async with ehr_server.admin() as admin:
        url = (await admin.inbox_link(ehr_tenant.tenant, doctor))["url"]

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = await browser.new_page(viewport={"width": 1100, "height": 1000})
            await page.goto(url)
            rows = page.locator("tbody tr")
            assert await rows.count() == 2
            assert "urgent" in await rows.nth(0).inner_text()  # most urgent first
            assert "routine" in await rows.nth(1).inner_text()
            assert "AI-generated" in await rows.nth(0).inner_text()
            await page.click(f"a[href$='/tasks/{task['id']}']")
            assert await page.locator("mark").count() == 1
            assert await page.locator("mark").inner_text() == QUOTE
            note_text = await page.locator(".note").inner_text()
            assert note_text.strip() == NOTE_TEXT.strip()
            assert await page.locator("h1 .ai-label").is_visible()
            body = await page.locator("main").inner_text()
            assert "Lena Marsh" in body and "rules-2024.06" in body and "Grade\n3" in body.replace("\t", "\n")
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(SCREENSHOTS / "inbox-task.png"), full_page=True)
            await page.select_option("#reason", "other-cause")
            await page.fill("#comment", "Infectious colitis confirmed by stool PCR")
            await page.click("#override")
            await page.wait_for_selector("p.done")
            assert await page.locator("#task-status").inner_text() == "rejected"
            await page.screenshot(path=str(SCREENSHOTS / "inbox-task-overridden.png"), full_page=True)
            await page.click("text=Back to my tasks")
            assert await page.locator("tbody tr").count() == 1  # the overridden one left the open list
        finally:
            await browser.close()

    stored = await client.read("Task", task["id"])
    assert stored["status"] == "rejected" and stored["meta"]["versionId"] == "2"
    assert stored["statusReason"]["coding"][0] == {"system": OVERRIDE_SYSTEM, "code": "other-cause",
                                                   "display": "Attributed to another cause"}
    assert stored["note"][-1]["text"] == "Infectious colitis confirmed by stool PCR"
    assert stored["note"][-1]["authorReference"] == {"reference": f"Practitioner/{doctor}"}
    assert stored["meta"]["security"][0]["code"] == "AIAST"
    assert (await client.read("Task", routine["id"]))["status"] == "requested"
    notified = await subscriber.wait_for(lambda: subscriber.of_type("event-notification"), what="notification")
    entry = notified[0].bundle["entry"][1]
    assert entry["resource"]["id"] == task["id"] and entry["resource"]["status"] == "rejected"
    assert notified[0].status["events"][0][1].endswith(f"/Task/{task['id']}/_history/2")
    assert notified[0].status["subscription"]["reference"].endswith(f"/Subscription/{sub['id']}")


async def test_inbox_never_shows_another_tenants_task(ehr_tenant, ehr_server, tenant_id):
    doctor, patient = await _people(ehr_tenant.client)
    task = await writeback_task(ehr_tenant.client, owner=doctor, patient=patient)
    other = "x" + tenant_id[1:]
    async with ehr_server.admin() as admin:
        await admin.create_tenant(other)
        creds = await admin.new_client(other, "vigil-test", ["system/*.cruds"])
        async with FhirClient(ehr_server.base(other), credentials=creds) as other_client:
            elsewhere = (await other_client.create({"resourceType": "Practitioner",
                                                    "name": [{"family": "Elsewhere"}]})).id
        other_link = _token((await admin.inbox_link(other, elsewhere))["url"])
    async with httpx.AsyncClient(base_url=ehr_server.url, follow_redirects=False) as http:
        # no session: 401
        assert (await http.get(f"/inbox/{ehr_tenant.tenant}/tasks/{task['id']}")).status_code == 401
        # a wrong sign-in link: 401, the other tenant's link does not open this inbox
        assert (await http.get(f"/inbox/{ehr_tenant.tenant}/login", params={"token": other_link})).status_code == 401
        # sign in to the other tenant: this tenant's task is 404 there, and its cookie is not accepted here
        response = await http.get(f"/inbox/{other}/login", params={"token": other_link})
        assert response.status_code == 303
        cookie = response.cookies[inbox_session.COOKIE]
        assert f"Path=/inbox/{other}" in response.headers["set-cookie"]
        signed = inbox_session.encode(ehr_server.admin_secret,
                                      inbox_session.Session(other, doctor, "n", 2**31 - 1))
        page = await http.get(f"/inbox/{other}/tasks/{task['id']}", cookies={inbox_session.COOKIE: signed})
        assert page.status_code == 404 and "Lena" not in page.text
        page = await http.get(f"/inbox/{ehr_tenant.tenant}/tasks/{task['id']}", cookies={inbox_session.COOKIE: signed})
        assert page.status_code == 401 and "Lena" not in page.text
        page = await http.get(f"/inbox/{ehr_tenant.tenant}", cookies={inbox_session.COOKIE: cookie})
        assert page.status_code == 401
        # a forged cookie for this tenant is refused
        forged = signed.rsplit(".", 1)[0].replace(other, ehr_tenant.tenant) + "." + "0" * 64
        page = await http.get(f"/inbox/{ehr_tenant.tenant}/tasks/{task['id']}", cookies={inbox_session.COOKIE: forged})
        assert page.status_code == 401
        # an override without the CSRF token is refused and the Task is unchanged
        own = inbox_session.encode(ehr_server.admin_secret,
                                   inbox_session.Session(ehr_tenant.tenant, doctor, "n", 2**31 - 1))
        refused = await http.post(f"/inbox/{ehr_tenant.tenant}/tasks/{task['id']}/override",
                                  data={"reason": "other-cause", "version": "1"}, cookies={inbox_session.COOKIE: own})
        assert refused.status_code == 403
    assert (await ehr_tenant.client.read("Task", task["id"]))["status"] == "requested"
