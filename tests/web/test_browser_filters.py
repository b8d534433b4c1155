"""The console's filtered watches in Chromium: a watch with ``event=`` or ``tag=`` gets a stream
of its own (the page's shared stream stays unfiltered), shows only what passes, keeps its filter
in the page's URL, closes its stream when removed, and says why the hub refused one."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from playwright.async_api import Page

from tests.support.browser import (
    BROWSER_LOOP,
    OpenPage,
    StartHub,
    console_data,
    publish,
    subscribers_of,
    wait_for,
)
from tests.support.processes import HubProcess

pytestmark = [pytest.mark.browser, pytest.mark.any_backplane, BROWSER_LOOP]


async def send(
    session: aiohttp.ClientSession,
    hub: HubProcess,
    channel: str,
    data: Any,
    event: str | None = None,
    tags: dict[str, str] | None = None,
) -> str:
    body: dict[str, Any] = {"data": data}
    if event is not None:
        body["event"] = event
    if tags is not None:
        body["tags"] = tags
    async with session.post(f"{hub.url}/channels/{channel}/events", json=body) as answer:
        assert answer.status == 202, await answer.text()
        return str((await answer.json())["id"])


async def watch_filtered(
    page: Page, channel: str, events: str = "", tags: str = "", history: bool = False
) -> None:
    await page.fill("#console-channel", channel)
    await page.fill("#console-filter-events", events)
    await page.fill("#console-filter-tags", tags)
    await page.set_checked("#console-history", history)
    await page.click("#console-form button[type=submit]")


async def filtered_open(page: Page, channel: str, text: str) -> None:
    """The watch's own stream is open: the hub sends its headers once the stream is live."""
    await page.wait_for_selector(
        f'#console-channels li[data-channel="{channel}"][data-filter="{text}"][data-state="open"]'
    )


async def test_an_event_filter_shows_only_the_kept_events_on_a_stream_of_its_own(
    start_hub: StartHub, open_page: OpenPage, session: aiohttp.ClientSession
) -> None:
    """orders with event=keep: keep events are shown (tagged or not), drop and untyped ones
    never; the clocks stay on the unfiltered shared stream; the watch survives a reload (its
    filter is in the URL) and its stream closes when it is removed."""
    hub = await start_hub()
    page = (await open_page(f"{hub.url}/?clocks=Asia/Kolkata:1")).page
    await watch_filtered(page, "orders", events="keep")
    await filtered_open(page, "orders", "event=keep")
    chip = '#console-channels li[data-channel="orders"]'
    assert await page.text_content(f"{chip} code.filter") == "event=keep"
    await send(session, hub, "orders", "k1", "keep")
    await send(session, hub, "orders", "d1", "drop")
    await send(session, hub, "orders", "k2", "keep", {"region": "eu"})
    await send(session, hub, "orders", "d2", "drop", {"region": "eu"})
    await publish(session, hub, "orders", "untyped")
    await send(session, hub, "orders", "k3", "keep")
    # in order on one stream: once k3 is shown, anything before it that passed is shown too
    await page.wait_for_selector('#console-events tr[data-channel="orders"] >> text=k3')
    assert await console_data(page, "orders") == ["k1", "k2", "k3"]
    rows = '#console-events tbody tr[data-channel="orders"]'
    assert (
        await page.eval_on_selector_all(
            rows, "rows => rows.map(row => [row.dataset.event, row.dataset.filter])"
        )
        == [["keep", "event=keep"]] * 3
    )
    # the clocks tick on the shared stream, which carries no filter (and not orders)
    clock = '.clock[data-timezone="Asia/Kolkata"]'
    await page.wait_for_selector(f'{clock}:not([data-ticks="0"])')
    shared = await page.text_content("#conn-url") or ""
    assert "event=" not in shared and "orders" not in shared
    assert (await subscribers_of(session, hub)).get("orders") == 1

    assert "watch=orders?event=keep" in page.url
    await page.reload()
    await page.wait_for_selector("html[data-ready]", state="attached")
    await filtered_open(page, "orders", "event=keep")
    await send(session, hub, "orders", "d3", "drop")
    await send(session, hub, "orders", "k4", "keep")
    await page.wait_for_selector('#console-events tr[data-channel="orders"] >> text=k4')
    assert await console_data(page, "orders") == ["k4"]

    await page.click(f"{chip} button.remove")
    await page.wait_for_selector(chip, state="detached")

    async def closed() -> bool:
        return not (await subscribers_of(session, hub)).get("orders")

    await wait_for(closed, "the filtered stream closed")
    assert "watch=" not in page.url


async def test_a_tag_filter_with_history_and_an_added_type(
    start_hub: StartHub, open_page: OpenPage, session: aiohttp.ClientSession
) -> None:
    """quotes with region:eu and tier:gold|silver, history replayed: only events with both
    tags show, from the history and live; a type the console starts listening for afterwards
    reaches the filtered stream too. The same channel unfiltered beside it shows everything."""
    hub = await start_hub()
    await send(session, hub, "quotes", "old eu gold", tags={"region": "eu", "tier": "gold"})
    await send(session, hub, "quotes", "old us gold", tags={"region": "us", "tier": "gold"})
    page = (await open_page(f"{hub.url}/?clocks=")).page
    await watch_filtered(page, "quotes", tags="region:eu tier:gold|silver", history=True)
    text = "tag=region:eu&tag=tier:gold|silver"
    await filtered_open(page, "quotes", text)
    await page.wait_for_selector('#console-events tr[data-channel="quotes"] >> text="old eu gold"')
    await send(session, hub, "quotes", "eu silver", tags={"region": "eu", "tier": "silver"})
    await send(session, hub, "quotes", "eu bronze", tags={"region": "eu", "tier": "bronze"})
    await send(session, hub, "quotes", "eu only", tags={"region": "eu"})
    await publish(session, hub, "quotes", "no tags")
    await page.fill("#console-type", "price")
    await page.click("#type-form button[type=submit]")
    await page.wait_for_selector('#type-list code:text-is("price")')
    await send(session, hub, "quotes", "eu gold price", "price", {"region": "eu", "tier": "gold"})
    await page.wait_for_selector(
        '#console-events tr[data-channel="quotes"] >> text="eu gold price"'
    )
    assert await console_data(page, "quotes") == ["old eu gold", "eu silver", "eu gold price"]

    await watch_filtered(page, "quotes")  # no filter: the shared stream
    await page.wait_for_function(
        "() => document.getElementById('conn-url').textContent.includes('channel=quotes')"
        " && document.getElementById('status').dataset.state === 'open'"
    )

    async def two() -> bool:
        return (await subscribers_of(session, hub)).get("quotes") == 2

    await wait_for(two, "two streams on quotes")
    await send(session, hub, "quotes", "us", tags={"region": "us"})
    await send(session, hub, "quotes", "eu gold", tags={"region": "eu", "tier": "gold"})
    await page.wait_for_selector(
        '#console-events tr[data-channel="quotes"]:not([data-filter]) >> text="eu gold"'
    )
    await page.wait_for_selector('#console-events tr[data-filter] >> text="eu gold"')
    unfiltered = await page.eval_on_selector_all(
        '#console-events tbody tr[data-channel="quotes"]:not([data-filter])',
        "rows => rows.map(row => row.cells[4].textContent).reverse()",
    )
    assert unfiltered == ["us", "eu gold"]


async def test_a_bad_filter_is_refused_in_the_page_and_the_hubs_refusal_is_shown(
    start_hub: StartHub, open_page: OpenPage, session: aiohttp.ClientSession
) -> None:
    """A tag without a value is caught before any stream opens, with the hub's rule; a stream
    the hub refuses (a private channel without a ticket: 401) shows the hub's own message."""
    hub = await start_hub(private_channels="secret/*")
    watched = await open_page(f"{hub.url}/?clocks=")
    page = watched.page
    await watch_filtered(page, "news", tags="region")
    error = await page.text_content("#console-error")
    assert error is not None and error.startswith('Tag "region": use name:value')
    assert await page.evaluate("document.activeElement.id") == "console-filter-tags"
    await watch_filtered(page, "news", events="a b!")
    assert (await page.text_content("#console-error") or "").startswith('Event type "b!"')
    assert await page.locator("#console-channels li").count() == 0

    await watch_filtered(page, "secret/x", events="keep")
    chip = '#console-channels li[data-channel="secret/x"][data-state="refused"]'
    await page.wait_for_selector(chip)
    async with session.get(f"{hub.url}/channels/secret/x/events?event=keep") as answer:
        assert answer.status == 401
        expected = (await answer.json())["error"]
    assert await page.text_content("#console-error") == (
        f"The hub refused secret/x (event=keep) (HTTP 401): {expected}"
    )
    # the refusals this test asked for; nothing else may have gone wrong
    refused = "/channels/secret/x/events?event=keep"
    watched.problems[:] = [
        problem
        for problem in watched.problems
        if not (problem.startswith("HTTP 401 for") and refused in problem)
        and "status of 401" not in problem
    ]


#: (event types, tags) the page's check and the hub's must judge alike.
FILTERS = [
    (["keep"], []),
    (["order.created", "a:b", "open", "x" * 64], []),
    (["x" * 65], []),
    (["b!"], []),
    ([f"t{n}" for n in range(32)], []),
    ([f"t{n}" for n in range(33)], []),
    ([], ["region:eu", "tier:gold|silver", "a.b-c_d:x:y"]),
    ([], ["region"]),
    ([], [":eu"]),
    ([], ["region:"]),
    ([], ["region:eu|"]),
    ([], ["r@g:eu"]),
    ([], ["t:" + "|".join(f"v{n}" for n in range(32))]),
    ([], ["t:" + "|".join(f"v{n}" for n in range(33))]),
    ([], [f"t{n}:v" for n in range(16)]),
    ([], [f"t{n}:v" for n in range(17)]),
    (["keep"], ["region:eu"]),
]


async def test_the_page_checks_a_filter_as_the_hub_does(
    start_hub: StartHub, open_page: OpenPage, session: aiohttp.ClientSession
) -> None:
    """filter.js's check accepts exactly the filters the hub accepts (the hub: 200 or 400)."""
    hub = await start_hub()
    page = (await open_page(f"{hub.url}/?clocks=")).page
    for events, tags in FILTERS:
        problem = await page.evaluate(
            """async ([events, tags]) => (await import("/assets/js/filter.js"))
                 .parseFilter(events.join(" "), tags.join(" ")).problem""",
            [events, tags],
        )
        query = [("event", name) for name in events] + [("tag", tag) for tag in tags]
        async with session.get(f"{hub.url}/channels/f/events", params=query) as answer:
            status = answer.status
            hub_says = (await answer.json())["error"] if status == 400 else None
        assert status in (200, 400)
        assert (problem is None) == (status == 200), (events, tags, problem, hub_says)
