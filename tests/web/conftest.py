"""The browser tests' fixtures: Chromium, pages watched for problems, hub processes to point
them at (``python -m hub serve``, as a user starts it), and a plain HTTP client."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, async_playwright

from tests.conftest import MakeHubProcess
from tests.support.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    SETTINGS,
    WAIT_MS,
    OpenPage,
    StartHub,
    WatchedPage,
    shown,
)
from tests.support.processes import HubProcess


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


@pytest.fixture
def start_hub(make_hub_process: MakeHubProcess) -> StartHub:
    """Start ``python -m hub serve`` processes with the page's ``SETTINGS`` on the test's
    backplane; each is stopped after the test."""

    async def start(**settings: Any) -> HubProcess:
        return await make_hub_process(**(SETTINGS | settings))

    return start


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client
