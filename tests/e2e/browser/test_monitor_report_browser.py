"""The monitor report as a clinical lead opens it, in headless Chromium (Debian's package) driven by
Playwright: a known day of alerts (sub-minute time to alert, 3 overrides of 25 actions) goes
through the real monitor worker, with the decision ledger rows of the same run; `vigil report` (the real command) writes the page for the run's
period; the summary paragraph and the units are visible, every chart loads, and a full-page
screenshot is saved under artifacts/screenshots."""
from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from services.triage import ledger as decisions
from services.core.db import create_pool
from tests.fixtures.monitor_run import known_run, write_ledger
from tests.integration.monitor.conftest import REPO, T0, mon, mon_secrets  # noqa: F401  (fixtures)

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = REPO / "artifacts" / "screenshots"


async def _counted(mon, n: int) -> bool:
    return await mon.metric("vigil_monitor_events_total") >= n


@pytest.mark.skipif(not Path(CHROMIUM).exists() and not shutil.which("chromium"),
                    reason="Debian's chromium is not installed (make browser installs it)")
async def test_report_summary_units_and_charts_in_a_browser(mon, tmp_path):
    from playwright.async_api import async_playwright

    t = mon.tenant
    run = known_run(t, T0 + timedelta(days=50), notes=36, tasks=25, accepted=22, overridden=3)
    admin = await create_pool(mon.stack, min_size=1, max_size=1)
    try:
        await decisions.ensure_schema(admin)
    finally:
        await admin.close()
    await write_ledger(mon.pools, t, run)
    for stream, events in run.events.items():
        await mon.publish(stream, events)
    total = sum(len(v) for v in run.events.values())
    async with mon.worker():
        await mon.wait(lambda: _counted(mon, total), timeout=90)
    out = tmp_path / "report"
    got = await asyncio.to_thread(subprocess.run, [
        sys.executable, "-m", "services.cli", "report", "--tenant", t, "--out", str(out),
        "--since", run.since.isoformat(), "--until", run.until.isoformat()],
        cwd=REPO, env=mon.env(), capture_output=True, text=True, timeout=180)
    assert got.returncode == 0, got.stderr
    index = Path(got.stdout.strip())
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / "monitor-report-summary.png"
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = await browser.new_page(viewport={"width": 1100, "height": 900})
            await page.goto(index.as_uri())
            await page.wait_for_function("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
            summary = page.locator("#summary")
            assert await summary.is_visible()
            text = " ".join((await summary.inner_text()).split())
            assert "Vigil read 36 notes" in text and "wrote 25 Tasks" in text
            assert "Override rate 12% over" in text and "above the 10% gate" in text
            assert "2 of 3 overrides say 'other cause'" in text
            assert "median 24 s, 95th percentile 46 s" in text and "within the 24.0 h gate" in text
            assert text.endswith("Every figure reconciles with the decision ledger.")
            tta = await page.locator("#kpi-tta").inner_text()
            assert re.fullmatch(r"\d+ s / \d+ s", tta.strip()) and "min" not in tta
            assert await page.locator("#kpi-override").inner_text() == "12%"
            assert "seconds" in await page.locator("#chart-tta").get_attribute("alt")
            # the page fits the screen's width: a lead reads it without scrolling sideways
            assert await page.evaluate("document.documentElement.scrollWidth") <= 1100
            box = await summary.bounding_box()
            assert box["y"] < 200  # the paragraph is at the top, above the charts
            await page.screenshot(path=str(shot), full_page=True)
        finally:
            await browser.close()
    assert shot.stat().st_size > 50_000
