"""`vigil report` over data the monitor worker consumed from the broker; its PNGs are real plots;
a headless browser renders the page and saves a screenshot; the gold re-score alerts on an F1 drop."""
from __future__ import annotations

import asyncio
import json
import os
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from services.core.db import create_pool
from services.inference.llm.ledger import Ledger
from services.monitor import drift
from services.monitor.config import MonitorSettings
from services.monitor.report.render import IMAGES
from tests.integration.monitor.conftest import BASE_MIX, DRIFT_ENV, REPO, SHIFTED_MIX, T0, notes, task_events

pytestmark = pytest.mark.integration
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = REPO / "artifacts" / "screenshots"
GOLD = REPO / "tests" / "data" / "gold_dev.jsonl"


async def llm_usage(mon, days: int) -> None:
    admin = await create_pool(mon.stack, min_size=1, max_size=1)
    try:
        await Ledger(admin, mon.pools).ensure_schema()
    finally:
        await admin.close()
    async with mon.pools.tx(mon.tenant) as conn:
        for day in range(days):
            for i in range(3 + day % 4):
                await conn.execute(
                    "INSERT INTO inference_llm_usage (tenant, day, document_id, model, prompt_hash, prompt_tokens, "
                    "completion_tokens, cost_usd, outcome) VALUES ($1, $2, $3, 'gpt-test', 'h', $4, $5, $6, 'ok')",
                    mon.tenant, (T0 + timedelta(days=day)).date(), f"doc-{day}-{i}", 1800, 220, 0.0125 * (1 + i))


async def test_report_renders_with_real_plots_and_a_browser_screenshot(mon, tmp_path):
    t = mon.tenant
    findings = notes(t, T0, 8, 10, BASE_MIX + [None, None]) + \
        notes(t, T0 + timedelta(days=8), 4, 10, SHIFTED_MIX, length=6000, note_type="34117-2")
    groups = []
    for i in range(36):
        action = None if i % 9 == 8 else ("overridden" if i % 5 == 0 or i > 28 else "accepted")
        groups.append(task_events(t, T0 + timedelta(hours=8 * i), ["colitis", "hepatitis", "rash"][i % 3],
                                  tta=timedelta(minutes=15 + (i * 37) % 240), action=action,
                                  reason="wrong-grade" if i % 2 else "not-present"))
    await mon.publish("findings", findings)
    await mon.publish_all(groups)
    await llm_usage(mon, 12)
    async with mon.worker(**DRIFT_ENV):
        await mon.wait(lambda: _notes(mon, len(findings)), timeout=60)
        await mon.wait(lambda: _acted(mon, 32), timeout=30)
        await mon.wait(lambda: _written(mon, 36), timeout=30)  # the 4 ignored Tasks have no action to wait for
        await mon.wait(lambda: _psi_alert(mon), timeout=30)
    out = tmp_path / "report"
    env = mon.env(**{k: str(v) for k, v in DRIFT_ENV.items()})
    got = await asyncio.to_thread(CliRunner().invoke, _cli(), ["report", "--tenant", t, "--out", str(out)], env=env)
    assert got.exit_code == 0, got.output
    index = out / "index.html"
    assert Path(got.stdout.strip()) == index
    html = index.read_text()
    for name in IMAGES.values():
        png = out / name
        assert png.exists() and f'src="{name}"' in html
        assert png.stat().st_size > 8000, name                     # a real plot, not an empty canvas
        with Image.open(png) as img:
            assert img.format == "PNG" and img.size[0] >= 800 and img.size[1] >= 350
            pixels = np.asarray(img.convert("L"), dtype=float)
            assert pixels.std() > 8, name                          # not a blank or single-colour image
            assert len(np.unique(pixels)) > 30, name
    assert "36" in html and "psi" in html and "category" in html   # Tasks created, the PSI alert row
    assert "wrong-grade" in html and "not-present" in html
    assert "xxxxx" not in html                                      # no evidence quote ever reaches the report
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} not installed: no browser screenshot")
    from playwright.async_api import async_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / "monitor_report.png"
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1100, "height": 900})
            await page.goto(index.as_uri())
            await page.wait_for_function("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
            assert await page.title() == f"Vigil monitor report: {t}"
            assert await page.locator("img").count() == len(IMAGES)
            await page.screenshot(path=str(shot), full_page=True)
        finally:
            await browser.close()
    with Image.open(shot) as img:
        assert img.size[0] >= 1000 and img.size[1] > 1500
        assert np.asarray(img.convert("L"), dtype=float).std() > 8


def _cli():
    from services.cli import app

    return app


async def _notes(mon, n):
    return await mon.window_sum("notes") == n


async def _acted(mon, n):
    return sum(1 for r in await mon.store.tasks(mon.tenant) if r["action"]) == n


async def _written(mon, n):
    return sum(1 for r in await mon.store.tasks(mon.tenant) if r["written_time"]) == n


async def _psi_alert(mon):
    return bool(await mon.store.alerts(mon.tenant, "psi"))


async def test_gold_rescore_alerts_on_an_f1_drop(mon, tmp_path):
    gold = tmp_path / "gold.jsonl"
    lines = [json.loads(l) for l in GOLD.read_text().splitlines()[:24]]
    gold.write_text("\n".join(json.dumps(l) for l in lines) + "\n")
    ms = MonitorSettings(eval_resamples=100)
    env = mon.env()
    first = await drift.gold_rescore(mon.store, ms, mon.path, mon.tenant, gold=gold, env=env)
    assert first["alert"] is False and first["score"]["f1"] > 0.9 and first["drop"] == 0
    # the same gold file, now with a third of its notes claiming an extra finding the engine does not see
    for row in lines[::3]:
        row["labels"] = row["labels"] + [{"category": "myocarditis", "grade": None}] \
            if all(l["category"] != "myocarditis" for l in row["labels"]) else row["labels"]
    gold.write_text("\n".join(json.dumps(l) for l in lines) + "\n")
    second = await drift.gold_rescore(mon.store, ms, mon.path, mon.tenant, gold=gold, env=env)
    assert second["drop"] > 0.05 and second["alert"] is True
    alerts = await mon.store.alerts(mon.tenant, "gold-f1-drop")
    assert len(alerts) == 1 and alerts[0]["value"] == pytest.approx(second["drop"])
    assert alerts[0]["details"]["baseline_f1"] == pytest.approx(first["score"]["f1"])
    scores = await mon.store.gold_scores(mon.tenant)
    assert [s["engine"] for s in scores] == ["rules", "rules"]
