"""Chromium (Debian's) through the HTTP/2 front: twenty EventSources on one origin all open.

The same page straight on the hub, over HTTP/1.1, gets six: the browser's limit of connections
per origin. The difference is what ``scripts/h2-front`` is for.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import aiohttp
import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.support.front import run_front
from tests.support.processes import HubProcess

pytestmark = [pytest.mark.browser, pytest.mark.any_backplane]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--ignore-certificate-errors",  # the front's certificate is self-signed
]
SETTINGS = {"HUB_HOST": "127.0.0.1", "HUB_PORT": "0", "HUB_CONFIG": "/dev/null"}
STREAMS = 20
WAIT_MS = 10000

#: Opens one EventSource per channel and counts, per stream, "open" and messages received.
OPEN_STREAMS = """(count) => {
  window.streams = [];
  for (let i = 0; i < count; i++) {
    const entry = {open: false, received: 0};
    const source = new EventSource(`/channels/many-${i}/events`);
    source.onopen = () => { entry.open = true; };
    source.onmessage = () => { entry.received += 1; };
    entry.source = source;
    window.streams.push(entry);
  }
}"""
OPENED = "() => window.streams.filter((s) => s.open).length"
RECEIVED = "() => window.streams.filter((s) => s.received > 0).length"
PROTOCOL = "() => performance.getEntriesByType('navigation')[0].nextHopProtocol"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (scripts/test does)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def hub_process() -> AsyncIterator[HubProcess]:
    process = await HubProcess.spawn(env=SETTINGS)
    try:
        yield await process.started()
    finally:
        await process.stop()


async def open_twenty(browser: Browser, origin: str) -> Page:
    page = await (await browser.new_context()).new_page()
    page.set_default_timeout(WAIT_MS)
    await page.goto(f"{origin}/healthz")  # a same-origin document that opens no stream itself
    await page.evaluate(OPEN_STREAMS, STREAMS)
    return page


async def publish_to_all(hub: HubProcess) -> None:
    async with aiohttp.ClientSession() as session:
        for i in range(STREAMS):
            url = f"{hub.url}/channels/many-{i}/events"
            async with session.post(url, json={"data": i}) as response:
                assert response.status == 202


async def open_streams_on_hub(hub: HubProcess) -> float:
    async with aiohttp.ClientSession() as session, session.get(f"{hub.url}/metrics") as response:
        for line in (await response.text()).splitlines():
            if line.startswith("hub_subscribers "):
                return float(line.split()[1])
    raise AssertionError("hub_subscribers is not in /metrics")


async def test_twenty_event_sources_over_http2_but_six_over_http1(
    browser: Browser, hub_process: HubProcess
) -> None:
    """Through the front all 20 open and receive, over h2; straight on the hub only 6 open."""
    async with run_front(hub_process.url) as front:
        page = await open_twenty(browser, front.url)
        assert await page.evaluate(PROTOCOL) == "h2"
        await page.wait_for_function(f"() => ({OPENED})() === {STREAMS}")
        await publish_to_all(hub_process)
        await page.wait_for_function(f"() => ({RECEIVED})() === {STREAMS}")
        assert await open_streams_on_hub(hub_process) == STREAMS
        await page.context.close()

    page = await open_twenty(browser, hub_process.url)
    assert await page.evaluate(PROTOCOL) == "http/1.1"
    await page.wait_for_function(f"() => ({OPENED})() === 6")
    await publish_to_all(hub_process)
    await page.wait_for_function(f"() => ({RECEIVED})() === 6")
    await asyncio.sleep(1)  # and no seventh opens: the others wait for a free connection
    assert await page.evaluate(OPENED) == 6
    assert await page.evaluate(RECEIVED) == 6
    assert await open_streams_on_hub(hub_process) == 6
    await page.context.close()
