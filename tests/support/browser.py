"""The page in Chromium: the browser's settings, a page watched for problems, the fixtures
(``browser``, ``open_page``, ``start_hub``, ``session``; tests/web/conftest.py offers them to
tests/web/) and what the browser tests ask of the page and of the hub behind it.

One Chromium serves every browser test of a session (of a pytest-xdist worker), each test in
browser contexts of its own (no cookie, storage or cache is shared): starting Playwright's node
driver and Chromium took 2-7 s a test, over three minutes of CI for 28 tests. Playwright's
objects belong to the event loop that made them, so the browser tests and the fixtures they
take run in the session's loop (``BROWSER_LOOP``, on each browser module's ``pytestmark``);
``start_hub`` is that loop's own ``make_hub_process``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
from playwright.async_api import (
    Browser,
    ConsoleMessage,
    Page,
    Request,
    Response,
    async_playwright,
)

from tests.support.hubs import hub_processes
from tests.support.processes import HubProcess

__all__ = [
    "BROWSER_LOOP",
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "SETTINGS",
    "WAIT_MS",
    "OpenPage",
    "StartHub",
    "WatchedPage",
    "browser",
    "channel_live",
    "console_data",
    "done_event",
    "gauge",
    "launched_browser",
    "one_connection",
    "open_page",
    "publish",
    "session",
    "shown",
    "start_hub",
    "state_is",
    "subscribers_of",
    "wait_for",
    "watch_in_console",
]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: Fast reconnects and fast jobs; no config file, so the shipped config.toml cannot change them.
SETTINGS = {"retry": 300, "demo_jobs": "true", "demo_job_seconds": 1.5}
WAIT_MS = 8000  # the longest any single page condition may take

StartHub = Callable[..., Awaitable[HubProcess]]

#: The mark of a browser test module: its tests run in the session's event loop, where the
#: session's Chromium lives.
BROWSER_LOOP = pytest.mark.asyncio(loop_scope="session")


@dataclass
class WatchedPage:
    """A page, and everything that went wrong on it (console errors, failed requests...)."""

    page: Page
    problems: list[str] = field(default_factory=list)
    outage: bool = False

    @contextlib.asynccontextmanager
    async def away(self) -> AsyncIterator[None]:
        """While the hub is unreachable, the browser's failed reconnection attempts are expected."""
        self.outage = True
        try:
            yield
        finally:
            await self.page.evaluate("0")  # a round trip: what happened before has been reported
            self.outage = False

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        if self.outage and message.text.startswith("Failed to load resource: net::ERR_"):
            return
        self.problems.append(f"console error: {message.text} at {message.location}")

    def on_request_failed(self, request: Request) -> None:
        failure = request.failure or ""
        # ERR_ABORTED: the page closed a stream itself (a new channel set, a reload)
        if failure == "net::ERR_ABORTED" or (self.outage and failure.startswith("net::ERR_")):
            return
        self.problems.append(f"request failed: {request.method} {request.url}: {failure}")

    def on_response(self, response: Response) -> None:
        if response.status >= 400:
            self.problems.append(f"HTTP {response.status} for {response.url}")

    def on_page_error(self, error: Exception) -> None:
        self.problems.append(f"page error: {error}")


OpenPage = Callable[..., Awaitable[WatchedPage]]


@contextlib.asynccontextmanager
async def launched_browser() -> AsyncIterator[Browser]:
    """Chromium through Playwright, closed on exit."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (scripts/test does)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    """The session's Chromium: a test opens contexts of its own in it (``open_page``) and
    closes them."""
    async with launched_browser() as launched:
        yield launched


@pytest_asyncio.fixture(loop_scope="session")
async def open_page(browser: Browser) -> AsyncIterator[OpenPage]:
    """Open a URL in a fresh browser context; after the test, no page may have had a problem."""
    watched: list[WatchedPage] = []

    async def open_(url: str, **context_options: Any) -> WatchedPage:
        context_options.setdefault("locale", "en-US")
        context = await browser.new_context(**context_options)
        page = await context.new_page()
        page.set_default_timeout(WAIT_MS)
        entry = WatchedPage(page)
        page.on("console", entry.on_console)
        page.on("pageerror", entry.on_page_error)
        page.on("requestfailed", entry.on_request_failed)
        page.on("response", entry.on_response)
        watched.append(entry)
        await page.goto(url)
        await shown(page)
        return entry

    yield open_
    for entry in watched:
        if not entry.page.is_closed():
            await entry.page.evaluate("0")  # let the last events arrive before judging
    problems = [problem for entry in watched for problem in entry.problems]
    for entry in watched:
        await entry.page.context.close()
    assert not problems, "\n".join(problems)


@pytest_asyncio.fixture(loop_scope="session")
async def start_hub(backplane_url: str) -> AsyncIterator[StartHub]:
    """Start ``python -m hub serve`` processes with the page's ``SETTINGS`` on the test's
    backplane; each is stopped after the test (``make_hub_process``, in the browser's loop)."""
    async with hub_processes(backplane_url) as make:

        async def start(**settings: Any) -> HubProcess:
            return await make(**(SETTINGS | settings))

        yield start


@pytest_asyncio.fixture(loop_scope="session")
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


# -- what the tests ask of the page and the hub ----------------------------------------------


async def shown(page: Page) -> None:
    """Wait until the page shows what its URL says. "load" is not enough: the page's module
    waits for the zone list before it makes its clocks, and "load" does not wait for that."""
    await page.wait_for_selector("html[data-ready]", state="attached")


async def publish(session: aiohttp.ClientSession, hub: HubProcess, channel: str, data: Any) -> str:
    async with session.post(f"{hub.url}/channels/{channel}/events", json={"data": data}) as answer:
        assert answer.status == 202, await answer.text()
        return str((await answer.json())["id"])


async def gauge(session: aiohttp.ClientSession, hub: HubProcess, name: str) -> float:
    async with session.get(f"{hub.url}/metrics") as response:
        for line in (await response.text()).splitlines():
            if line.startswith(f"{name} "):
                return float(line.split()[1])
    raise AssertionError(f"{name} is not in /metrics")


async def subscribers_of(session: aiohttp.ClientSession, hub: HubProcess) -> dict[str, int]:
    async with session.get(f"{hub.url}/channels") as response:
        return {c["name"]: c["subscribers"] for c in await response.json()}


async def wait_for(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll the hub until ``check`` holds, for at most WAIT_MS."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_MS / 1000
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"{what} did not happen within {WAIT_MS / 1000} s")
        await asyncio.sleep(0.05)


async def one_connection(session: aiohttp.ClientSession, hub: HubProcess) -> None:
    """The hub counts exactly one open event stream: the page's."""

    async def single() -> bool:
        return await gauge(session, hub, "hub_subscribers") == 1

    await wait_for(single, "hub_subscribers 1")
    await asyncio.sleep(0.3)  # and it stays so (no second stream opening)
    assert await gauge(session, hub, "hub_subscribers") == 1


async def state_is(page: Page, state: str) -> None:
    await page.wait_for_selector(f'#status[data-state="{state}"]')


async def console_data(page: Page, channel: str) -> list[str]:
    """The data column of the console's rows for ``channel``, oldest first."""
    rows: list[str] = await page.eval_on_selector_all(
        f'#console-events tbody tr[data-channel="{channel}"]',
        "rows => rows.map(row => row.cells[4].textContent)",
    )
    return rows[::-1]


async def watch_in_console(page: Page, channel: str) -> None:
    await page.fill("#console-channel", channel)
    await page.click("#console-form button[type=submit]")
    await page.wait_for_selector(f'#console-channels code:text-is("{channel}")')


async def channel_live(
    session: aiohttp.ClientSession, hub: HubProcess, channel: str, page: Page
) -> None:
    """Wait until the page's stream on ``channel`` is live, so a publish from now on reaches it.

    The hub counts a stream in /channels as soon as it is registered, which is before it has
    fixed where a stream without history starts (with Redis, a few round trips later): an event
    published in between is, by design, not sent. The hub sends the response headers only once
    the stream is live, so wait for the page's current connection, on that channel, to be open.
    """

    async def live() -> bool:
        return (await subscribers_of(session, hub)).get(channel) == 1

    await wait_for(live, f"a subscriber on {channel}")
    await page.wait_for_function(
        """(channel) => document.getElementById("status").dataset.state === "open"
             && new URL(document.getElementById("conn-url").textContent, location.href)
                  .searchParams.getAll("channel").includes(channel)""",
        arg=channel,
    )


async def done_event(session: aiohttp.ClientSession, hub: HubProcess, job_id: str) -> Any:
    """The job's ``done`` data, read from the hub's history as any client would."""
    url = f"{hub.url}/channels/job/{job_id}/events?from=start"
    async with asyncio.timeout(5), session.get(url) as response:
        event = ""
        async for line in response.content:
            text = line.decode().rstrip("\n")
            if text.startswith("event: "):
                event = text[7:]
            elif text.startswith("data: ") and event == "done":
                return orjson.loads(text[6:])
    raise AssertionError("no done event")
