"""The control console in headless Chromium (Debian's package) driven by Playwright: sign in with an
operator token, filter the dead letters, open one (stack, payload), dry-run, replay with progress;
the fixed stage processes every replayed event once."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from services.core.errors import FatalError, RetryableError
from tests.fixtures.control import StageHarness, dead_letter, probe_event, wait_for

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parents[3] / "artifacts" / "screenshots"


def _fail(event):
    n = int(event.data["id"].split("-")[1])
    if n < 3:
        return FatalError("mapping refused the resource", code="mapping_refused")
    return RetryableError("tools service unavailable", code="tools_down")


@pytest.mark.skipif(not Path(CHROMIUM).exists() and not shutil.which("chromium"),
                    reason="Debian's chromium is not installed (make browser installs it)")
async def test_console_filter_open_dry_run_replay(stack, control, console, provision):
    from playwright.async_api import async_playwright

    tenant = await provision()
    control.tenants.append(tenant)
    events = [probe_event(tenant, i) for i in range(5)]
    await dead_letter(stack, tenant, events, stage="probe", fail=_fail)
    fatal_ids = {e.id for e in events[:3]}
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            await page.goto(f"{console}/login")
            await page.fill("#token", control.token(tenant, sub="oncall-ana"))
            await page.click("button[type=submit]")
            await page.wait_for_url(f"{console}/t/{tenant}/dlq")
            assert await page.locator("#dead-letters tbody tr").count() == 5

            await page.fill("#f-error_class", "FatalError")
            await page.click("#apply-filters")
            await page.wait_for_url("**error_class=FatalError**")
            rows = page.locator("#dead-letters tbody tr")
            assert await rows.count() == 3
            assert "mapping_refused" in await rows.nth(0).inner_text()
            await page.screenshot(path=str(SCREENSHOTS / "console-dlq-filtered.png"), full_page=True)

            await rows.nth(0).locator("a").click()
            await page.wait_for_selector("#stack")
            assert "mapping refused the resource" in await page.locator("#stack").inner_text()
            assert await page.locator("#event-id").inner_text() in fatal_ids
            await page.click("#show-payload")
            await page.wait_for_selector("#payload")
            assert '"resourceType":"DocumentReference"' in await page.locator("#payload").inner_text()
            await page.screenshot(path=str(SCREENSHOTS / "console-dlq-detail.png"), full_page=True)

            await page.go_back()
            await page.go_back()
            await page.wait_for_selector("#dry-run")
            await page.click("#dry-run")
            await page.wait_for_selector("#dry-run-result")
            assert await page.locator("#would-send").inner_text() == "3"
            await page.screenshot(path=str(SCREENSHOTS / "console-dry-run.png"), full_page=True)

            async with StageHarness(stack, tenant, "probe", fail=lambda e: None) as stage:
                await page.click("#replay")
                await page.wait_for_selector("#replay-status")
                await page.wait_for_function("document.getElementById('state').textContent === 'done'",
                                             timeout=30_000)
                assert await page.locator("#sent").inner_text() == "3"
                await page.screenshot(path=str(SCREENSHOTS / "console-replay-done.png"), full_page=True)

                async def processed() -> bool:
                    return fatal_ids <= set(stage.processed)
                await wait_for(processed, what="the replayed events processed")
            assert sorted(i for i in stage.processed if i in fatal_ids) == sorted(fatal_ids)

            await page.goto(f"{console}/t/{tenant}/dlq?status=any")
            assert (await page.locator("#dead-letters tbody").inner_text()).count("replayed") == 3
        finally:
            await browser.close()
