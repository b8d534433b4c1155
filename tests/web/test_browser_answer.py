"""The resumable-stream recipe in Chromium: a streamed answer survives a reload mid-answer.

The page rebuilds the answer from the channel's history after the reload and follows the rest
live; every token's index must arrive once, in order, and the text must be the whole answer.
The answer's channel is private, as in the shipped config: each stream (the first and the one
after the reload) opens with a new one-time ticket.
"""

from __future__ import annotations

import aiohttp
import orjson
import pytest

from hub.demo_answer import ANSWER_TEXT, tokens
from tests.support.browser import BROWSER_LOOP, OpenPage, StartHub

pytestmark = [pytest.mark.browser, pytest.mark.any_backplane, BROWSER_LOOP]


@pytest.mark.parametrize(
    "viewport", [{"width": 1280, "height": 900}, {"width": 390, "height": 844}], ids=["1280", "390"]
)
async def test_a_reload_mid_answer_continues_exactly_where_it_was(
    start_hub: StartHub, open_page: OpenPage, viewport: dict[str, int]
) -> None:
    hub = await start_hub(demo_job_seconds=6, private_channels="answer/*")
    page = (await open_page(f"{hub.url}/", viewport=viewport)).page
    tickets: list[str] = []
    page.on("request", lambda r: tickets.append(r.url) if r.url.endswith("/tickets") else None)
    await page.click("#answer-start")
    await page.wait_for_url("**/?answer=*")
    total = len(tokens())
    await page.wait_for_function(
        "() => Number(document.getElementById('answer-view').dataset.tokens) >= 15"
    )
    before = await page.text_content("#answer-text")
    assert before is not None
    assert await page.get_attribute("#answer-view", "data-status") == "streaming", "mid-answer"

    await page.reload()
    await page.wait_for_function(
        "(text) => document.getElementById('answer-text').textContent.startsWith(text)", arg=before
    )
    await page.wait_for_selector('#answer-view[data-status="done"]', timeout=15000)
    view = await page.evaluate("({...document.getElementById('answer-view').dataset})")
    assert view["tokens"] == str(total)
    assert (view["gaps"], view["repeats"]) == ("0", "0"), "a token lost or doubled"
    assert await page.text_content("#answer-text") == ANSWER_TEXT
    assert len(tickets) == 2, "one ticket per stream: the first, and the one after the reload"
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0


async def test_demo_answer_is_published_as_small_indexed_events(
    start_hub: StartHub, session: aiohttp.ClientSession
) -> None:
    """The API the page uses: 202 with the channel; its history is the tokens, in order."""
    hub = await start_hub(demo_job_seconds=0.5)
    async with session.post(f"{hub.url}/demo/answers") as response:
        assert response.status == 202
        answer = await response.json()
    assert answer["channel"] == f"answer/{answer['id']}"
    url = f"{hub.url}{answer['events']}"
    got: list[str] = []
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as stream:
        async for line in stream.content:
            text = line.decode()
            if text.startswith("event: end"):
                break
            if text.startswith('data: {"i"'):
                got.append(text[6:].strip())
    pieces = [orjson.loads(item) for item in got]
    assert [piece["i"] for piece in pieces] == list(range(len(tokens())))
    assert "".join(piece["t"] for piece in pieces) == ANSWER_TEXT
