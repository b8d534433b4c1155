"""Make docs/screenshot.png (1280 px wide) and docs/screenshot-phone.png (390 px): the page on a
running hub, with clocks ticking, a job half-way, an answer streaming and a few events in the
console. Run it with ``scripts/screenshot`` (it needs Debian's chromium).

It starts its own hub (``python -m hub serve`` with the shipped config.toml on a free port),
so nothing else needs to run, and stops it afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

from playwright.async_api import async_playwright

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ORDERS = [
    {"order": 1041, "customer": "Asha", "total": 42.5},
    {"order": 1042, "customer": "Tom", "total": 18.0},
    {"order": 1043, "customer": "Lucía", "total": 99.9},
]


def start_hub() -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env |= {"HUB_PORT": "0", "HUB_DEMO_JOB_SECONDS": "8"}
    hub = subprocess.Popen(
        [sys.executable, "-m", "hub", "serve", "--config", "config.toml"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert hub.stdout is not None
    for line in hub.stdout:
        found = re.search(r"listening on (http://[\d.]+:\d+)", line)
        if found:
            return hub, found.group(1)
    raise SystemExit("the hub did not start")


def publish(url: str, channel: str, event: str, data: object) -> None:
    body = json.dumps({"event": event, "data": data}).encode()
    request = urllib.request.Request(
        f"{url}/channels/{channel}/events",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5):
        pass


async def shoot(url: str, out: Path, width: int) -> None:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": width, "height": 900}, locale="en-GB")
        await page.goto(f"{url}/?watch=orders")
        await page.wait_for_selector('#status[data-state="open"]')
        await page.wait_for_selector('.clock[data-timezone="Asia/Kolkata"]:not([data-ticks="0"])')
        await page.fill("#console-type", "order.created")
        await page.click("#type-form button[type=submit]")
        for order in ORDERS:
            await asyncio.to_thread(publish, url, "orders", "order.created", order)
            await asyncio.sleep(0.4)
        await page.click("#job-start")
        await page.click("#answer-start")
        await page.wait_for_function("() => document.getElementById('job-progress').value >= 60")
        await page.wait_for_function(
            "() => Number(document.getElementById('answer-view').dataset.tokens) >= 60"
        )
        await page.click("#channels-refresh")
        await page.wait_for_timeout(400)
        await page.evaluate("() => { document.activeElement.blur(); window.scrollTo(0, 0); }")
        await page.screenshot(path=str(out), full_page=True)
        await browser.close()


def main() -> int:
    shots = {ROOT / "docs" / "screenshot.png": 1280, ROOT / "docs" / "screenshot-phone.png": 390}
    (ROOT / "docs").mkdir(exist_ok=True)
    hub, url = start_hub()
    try:
        for out, width in shots.items():
            asyncio.run(shoot(url, out, width))
            print(f"wrote {out.relative_to(ROOT)}")
    finally:
        hub.terminate()
        hub.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
