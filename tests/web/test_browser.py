"""The web page in a real browser: headless Chromium (Debian's ``chromium``) driven by Playwright.

Each test runs real hub processes (``python -m hub serve``, as a user starts it) on 127.0.0.1
and fails on any console error, uncaught page error, failed request or HTTP error response of
the page, except inside a declared outage (``async with page.away()``), where the browser's own
"Failed to load resource: net::ERR_..." lines for its reconnection attempts are expected.
The fixtures are in tests/web/conftest.py, the helpers in tests/support/browser.py.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import sys
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from playwright.async_api import Page

from tests.support.browser import (
    BROWSER_LOOP,
    WAIT_MS,
    OpenPage,
    StartHub,
    channel_live,
    console_data,
    done_event,
    gauge,
    one_connection,
    publish,
    shown,
    state_is,
    subscribers_of,
    wait_for,
    watch_in_console,
)
from tests.support.processes import ROOT, dies_with_us
from tests.support.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.browser, pytest.mark.any_backplane, BROWSER_LOOP]

WORKER = ROOT / "examples" / "job_worker.py"

# -- clocks ----------------------------------------------------------------------------------

#: Test instrumentation: record every change of a clock card's data-iso, with the browser time.
RECORD_TICKS = """() => {
  window.__ticks = [];
  new MutationObserver((changes) => {
    for (const change of changes) {
      const card = change.target;
      if (card.dataset.iso) {
        const { channel, timezone, iso, id } = card.dataset;
        window.__ticks.push({ channel, timezone, iso, id: Number(id), at: Date.now() });
      }
    }
  }).observe(document.getElementById("clock-list"), {
    subtree: true, attributes: true, attributeFilter: ["data-iso"],
  });
}"""


async def test_two_cities_tick_with_their_own_intervals_over_one_connection(
    start_hub: StartHub, open_page: OpenPage, session: aiohttp.ClientSession
) -> None:
    """A city from the URL and one added with the search field tick with the right local time,
    each at its own interval, on ONE event stream; removing a city keeps it one stream."""
    hub = await start_hub()
    watched = await open_page(f"{hub.url}/?clocks=Asia/Kolkata:1")
    page = watched.page
    await page.wait_for_selector('.clock[data-timezone="Asia/Kolkata"]:not([data-ticks="0"])')
    await page.wait_for_function("() => document.querySelectorAll('#tz-list option').length > 300")
    await page.fill("#tz-input", "new york")  # the search resolves a city to its IANA name
    await page.select_option("#tz-interval", "2")
    await page.click("#clock-form button[type=submit]")
    new_york = '.clock[data-timezone="America/New_York"]'
    await page.wait_for_selector(f'{new_york}[data-interval="2"]:not([data-ticks="0"])')
    assert "clocks=Asia/Kolkata:1,America/New_York:2" in page.url, "the URL keeps the choice"
    await one_connection(session, hub)

    await page.evaluate(RECORD_TICKS)
    await page.wait_for_function(
        """() => ["Asia/Kolkata", "America/New_York"].every(
             (tz) => window.__ticks.filter((t) => t.timezone === tz).length >= 2)""",
        timeout=7000,
    )
    ticks = await page.evaluate("window.__ticks")
    for timezone, interval in (("Asia/Kolkata", 1), ("America/New_York", 2)):
        moments = [t for t in ticks if t["timezone"] == timezone]
        instants = []
        for tick in moments:
            moment = datetime.fromisoformat(tick["iso"])
            zone_offset = moment.astimezone(ZoneInfo(timezone)).utcoffset()
            assert moment.utcoffset() == zone_offset, f"{timezone}: {tick['iso']} has the offset"
            assert abs(moment.timestamp() - tick["at"] / 1000) < 1.5, f"{timezone}: the time now"
            instants.append(int(moment.timestamp()))
        assert all(instant % interval == 0 for instant in instants), (timezone, instants)
        steps = {b - a for a, b in itertools.pairwise(instants)}
        assert steps == {interval}, f"{timezone} ticks every {interval} s: {instants}"
    shown = await page.eval_on_selector_all(
        ".clock", "cards => cards.map(c => [c.dataset.iso, c.querySelector('time').textContent])"
    )
    for iso, text in shown:  # the face shows the zone's wall time, H:M:S with the seconds
        assert text == datetime.fromisoformat(iso).strftime("%H:%M:%S")
    labels = await page.eval_on_selector_all(
        ".clock",
        """cards => cards.map(c => [
             c.dataset.timezone, c.dataset.iso, c.querySelector('.nowrap').textContent])""",
    )
    for timezone, iso, label in labels:  # the abbreviation and offset: "IST UTC+05:30"
        moment = datetime.fromisoformat(iso)
        assert label == f"{moment.astimezone(ZoneInfo(timezone)).tzname()} UTC{iso[19:]}"

    counts = await subscribers_of(session, hub)
    assert counts["time/Asia/Kolkata/1"] == 1 and counts["time/America/New_York/2"] == 1
    assert await gauge(session, hub, "hub_tickers") == 2

    await page.click('button[aria-label="Remove the Kolkata clock (every 1 s)"]')
    await page.wait_for_selector('.clock[data-timezone="Asia/Kolkata"]', state="detached")

    async def one_ticker() -> bool:
        return await gauge(session, hub, "hub_tickers") == 1

    await wait_for(one_ticker, "the Kolkata ticker stopping")
    await one_connection(session, hub)
    assert "clocks=America/New_York:2" in page.url


async def test_changing_cities_loses_and_repeats_no_event(
    start_hub: StartHub, open_page: OpenPage, session: aiohttp.ClientSession
) -> None:
    """Each change of cities opens a stream for the new channel set (the old one closes once the
    new one is registered, and the new one resumes by id), while a channel on the same
    connection receives a steady flow of events: the console shows every one exactly once."""
    hub = await start_hub()
    watched = await open_page(f"{hub.url}/?clocks=Europe/London:1&watch=news")
    page = watched.page
    await channel_live(session, hub, "news", page)
    published: list[str] = []
    stop = asyncio.Event()

    async def flow() -> None:
        while not stop.is_set():
            published.append(f"n{len(published)}")
            await publish(session, hub, "news", published[-1])
            await asyncio.sleep(0.01)

    publisher = asyncio.create_task(flow())
    try:
        await page.wait_for_selector('#console-events tr[data-channel="news"] >> text=n5')
        for city, interval in (("Asia/Tokyo", "2"), ("America/Sao_Paulo", "1")):
            before = await page.text_content("#conn-url")
            await page.fill("#tz-input", city)
            await page.select_option("#tz-interval", interval)
            await page.click("#clock-form button[type=submit]")
            await page.wait_for_selector(f'.clock[data-timezone="{city}"]:not([data-ticks="0"])')
            assert before != await page.text_content("#conn-url")
        await page.click('button[aria-label="Remove the London clock (every 1 s)"]')
        await page.wait_for_function(
            "() => !document.getElementById('conn-url').textContent.includes('London')"
        )
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        await publisher
    last = published[-1]
    await page.wait_for_selector(f'#console-events tr[data-channel="news"] >> text="{last}"')
    assert await console_data(page, "news") == published
    await one_connection(session, hub)  # the old stream's close has reached the hub by then
    assert "time/Europe/London/1" not in await subscribers_of(session, hub)


async def test_bad_clocks_in_the_url_are_named_and_the_rest_tick(
    start_hub: StartHub, open_page: OpenPage, session: aiohttp.ClientSession
) -> None:
    """A ?clocks= list with an unknown zone: that entry is left out with a note naming it, and
    the valid clock ticks. The page never asks the hub for the bad one (which would refuse the
    whole stream: the fixture fails the test on any HTTP error)."""
    hub = await start_hub()
    watched = await open_page(f"{hub.url}/?clocks=Asia/Tokyo:2,Mars/Olympus:5")
    page = watched.page
    await page.wait_for_function(
        """() => Number(document.querySelector('.clock[data-timezone="Asia/Tokyo"]')
             ?.dataset.ticks) >= 2""",
        timeout=WAIT_MS + 2000,
    )  # the current time at once, then a tick on the next even second
    assert await page.is_visible("#clock-note")
    notes = await page.eval_on_selector_all(
        "#clock-note li", "items => items.map(i => i.textContent)"
    )
    assert notes == ["Ignored Mars/Olympus: unknown timezone"]
    cards = await page.eval_on_selector_all(".clock", "cards => cards.map(c => c.dataset.channel)")
    assert cards == ["time/Asia/Tokyo/2"]
    counts = await subscribers_of(session, hub)
    assert counts.get("time/Asia/Tokyo/2") == 1
    assert not [name for name in counts if "Mars" in name]
    await one_connection(session, hub)

    # other kinds of bad entries, each named as written; no note when nothing was left out
    await page.goto(f"{hub.url}/?clocks=Europe/Paris:0,UTC,Asia/Tokyo:2.5,UTC:1")
    await shown(page)
    await page.wait_for_selector('.clock[data-channel="time/UTC/1"]:not([data-ticks="0"])')
    notes = await page.eval_on_selector_all(
        "#clock-note li", "items => items.map(i => i.textContent)"
    )
    assert notes == [
        "Ignored Europe/Paris:0: the interval must be whole seconds from 1 to 3600",
        "Ignored UTC: write it as zone:seconds, e.g. Asia/Tokyo:5",
        "Ignored Asia/Tokyo:2.5: the interval must be whole seconds from 1 to 3600",
    ]
    await page.goto(f"{hub.url}/?clocks=UTC:1")
    await shown(page)
    await page.wait_for_selector('.clock[data-channel="time/UTC/1"]:not([data-ticks="0"])')
    assert not await page.is_visible("#clock-note")


async def test_two_clocks_of_one_zone_each_tick_at_their_interval(
    start_hub: StartHub, open_page: OpenPage, session: aiohttp.ClientSession
) -> None:
    """Asia/Tokyo every 1 s and every 2 s on one stream: each tick names its channel, so each
    card gets its own channel's ticks only, at its own interval, with epoch-counted ids."""
    hub = await start_hub()
    watched = await open_page(f"{hub.url}/?clocks=Asia/Tokyo:1,Asia/Tokyo:2")
    page = watched.page
    one, two = "time/Asia/Tokyo/1", "time/Asia/Tokyo/2"
    for channel in (one, two):
        await page.wait_for_selector(f'.clock[data-channel="{channel}"]:not([data-ticks="0"])')
    await page.evaluate(RECORD_TICKS)  # from here on, only ticks on each clock's interval
    await page.wait_for_function(
        f"""() => [["{one}", 4], ["{two}", 3]].every(
             ([channel, count]) => window.__ticks.filter((t) => t.channel === channel).length
               >= count)""",
        timeout=WAIT_MS + 2000,
    )
    ticks = await page.evaluate("window.__ticks")
    for channel, interval in ((one, 1), (two, 2)):
        mine = [tick for tick in ticks if tick["channel"] == channel]
        instants = [int(datetime.fromisoformat(tick["iso"]).timestamp()) for tick in mine]
        assert all(instant % interval == 0 for instant in instants), (channel, instants)
        assert {b - a for a, b in itertools.pairwise(instants)} == {interval}, (channel, instants)
        assert [tick["id"] for tick in mine] == [instant // interval for instant in instants]
    assert "clocks=Asia/Tokyo:1,Asia/Tokyo:2" in page.url
    counts = await subscribers_of(session, hub)
    assert counts[one] == 1 and counts[two] == 1
    assert await gauge(session, hub, "hub_tickers") == 2
    await one_connection(session, hub)

    await page.click('button[aria-label="Remove the Tokyo clock (every 1 s)"]')
    await page.wait_for_selector(f'.clock[data-channel="{one}"]', state="detached")
    assert await page.is_visible(f'.clock[data-channel="{two}"]')
    await page.wait_for_function("() => location.search === '?clocks=Asia/Tokyo:2'")


# -- jobs ------------------------------------------------------------------------------------

#: Test instrumentation: every value the progress bar takes.
RECORD_PROGRESS = """() => {
  window.__progress = [];
  const bar = document.getElementById("job-progress");
  new MutationObserver(() => window.__progress.push(bar.value))
    .observe(bar, { attributes: true, childList: true, characterData: true, subtree: true });
}"""


async def result_shown(page: Page) -> dict[str, str]:
    await page.wait_for_selector("#job-result:not([hidden])")
    shown: dict[str, str] = dict(
        await page.eval_on_selector_all(
            "#job-result-list dd", "items => items.map(dd => [dd.dataset.key, dd.textContent])"
        )
    )
    return shown


async def check_finished(page: Page, result: dict[str, Any]) -> None:
    """The job view shows 100 %, every stage done, and the hub's result."""
    shown = await result_shown(page)
    assert await page.eval_on_selector("#job-progress", "bar => bar.value") == 100
    assert await page.text_content("#job-pct") == "100 %"
    assert await page.get_attribute("#job-view", "data-status") == "done"
    stages = await page.eval_on_selector_all(
        "#job-stages li", "items => items.map(i => i.dataset.state)"
    )
    assert stages == ["done"] * 4
    assert shown["rows"] == f"{result['rows']:,}"
    assert shown["top_region"] == result["top_region"]
    assert shown["revenue"] == f"{result['revenue']:,.2f}".rstrip("0").rstrip(".")
    # the job ended: the view closed its channel, and says so
    await page.wait_for_selector("#job-channel:not([hidden])")
    assert await page.get_attribute("#job-view", "data-channel") == "closed"
    assert "closed: the job is done" in (await page.text_content("#job-channel") or "")


async def test_job_started_from_the_page_reaches_100_and_shows_its_result(
    start_hub: StartHub, open_page: OpenPage, session: aiohttp.ClientSession
) -> None:
    """ "Start job" (pressed with the keyboard) gets a job page URL, a bar that moves to 100 %
    live, and the result; a page opened after the job finished shows the same result."""
    hub = await start_hub()
    watched = await open_page(f"{hub.url}/")
    page = watched.page
    cities = await page.eval_on_selector_all(
        ".clock", "cards => cards.map(c => c.dataset.timezone)"
    )
    assert cities == ["Asia/Kolkata", "Europe/London", "America/New_York"], "the default cities"
    labels_missing = await page.evaluate(
        """() => [...document.querySelectorAll("input, select")]
             .filter((field) => field.labels.length === 0).map((field) => field.id)"""
    )
    assert labels_missing == [], "every field has a label"

    await page.evaluate(RECORD_PROGRESS)
    await page.focus("#job-start")
    await page.keyboard.press("Enter")
    await page.wait_for_url(re.compile(r"/jobs/[0-9a-f]{12}$"))
    job_id = urlsplit(page.url).path.rsplit("/", 1)[1]
    assert await page.text_content("#job-id") == job_id
    result = (await done_event(session, hub, job_id))["result"]
    await check_finished(page, result)
    seen = await page.evaluate("window.__progress")
    assert any(0 < value < 100 for value in seen), f"the bar moved while the job ran: {seen}"
    assert seen == sorted(seen)
    await one_connection(session, hub)

    # later, on another device: the job's own URL
    late = await open_page(f"{hub.url}/jobs/{job_id}", viewport={"width": 390, "height": 844})
    await check_finished(late.page, result)
    assert await late.page.title() == f"Job {job_id} · ssehub"
    overflow = await late.page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, "no sideways scrolling on a phone"


async def test_job_page_reloaded_mid_job_shows_all_progress(
    start_hub: StartHub, open_page: OpenPage, session: aiohttp.ClientSession
) -> None:
    """Reloading a job page mid-job brings back the progress so far at once (history), then
    the rest live, to the result."""
    hub = await start_hub(demo_job_seconds=3)
    watched = await open_page(f"{hub.url}/")
    page = watched.page
    await page.click("#job-start")
    await page.wait_for_url(re.compile(r"/jobs/[0-9a-f]{12}$"))
    await page.wait_for_function("() => document.getElementById('job-progress').value >= 20")
    before = await page.eval_on_selector("#job-progress", "bar => bar.value")
    assert before < 100
    await page.reload()
    await shown(page)
    await page.wait_for_function(
        f"() => document.getElementById('job-progress').value >= {before}", timeout=1500
    )
    assert await page.get_attribute("#job-view", "data-status") in ("running", "done")
    job_id = urlsplit(page.url).path.rsplit("/", 1)[1]
    await check_finished(page, (await done_event(session, hub, job_id))["result"])


async def test_a_job_published_by_a_service_has_a_page_too(
    start_hub: StartHub, open_page: OpenPage
) -> None:
    """With the demo runner off there is no "Start job" button, but a job that a service
    publishes (examples/job_worker.py, over HTTP) shows at /jobs/<id>, even once finished."""
    hub = await start_hub(demo_jobs="false")
    worker = await asyncio.create_subprocess_exec(
        sys.executable, str(WORKER), "--url", hub.url, "--job", "from-a-worker", "--seconds", "0.5",
        stdout=asyncio.subprocess.DEVNULL, preexec_fn=dies_with_us,
    )  # fmt: skip
    async with asyncio.timeout(20):
        assert await worker.wait() == 0
    watched = await open_page(f"{hub.url}/jobs/from-a-worker")
    page = watched.page
    assert not await page.is_visible("#job-start")
    shown = await result_shown(page)
    assert shown["rows"] == "50,000" and "mean_reading" in shown
    assert await page.eval_on_selector("#job-progress", "bar => bar.value") == 100


async def test_deleting_a_running_jobs_channel_closes_it_on_the_page(
    start_hub: StartHub, open_page: OpenPage, session: aiohttp.ClientSession
) -> None:
    """DELETE /channels/job/<id> under an open job page: the hub sends event: close, the job
    view says its channel was closed and stops watching it, and the page's one stream goes on
    (its clocks still tick) without a refused request."""
    hub = await start_hub(demo_job_seconds=6)
    watched = await open_page(f"{hub.url}/?clocks=Europe/London:1")
    page = watched.page
    await page.click("#job-start")
    await page.wait_for_url(re.compile(r"/jobs/[0-9a-f]{12}(\?|$)"))
    job_id = urlsplit(page.url).path.rsplit("/", 1)[1]
    await page.wait_for_function("() => document.getElementById('job-progress').value > 0")
    async with session.delete(f"{hub.url}/channels/job/{job_id}") as response:
        assert response.status == 200, await response.text()
    await page.wait_for_selector("#job-channel:not([hidden])")
    assert "closed: the hub closed it" in (await page.text_content("#job-channel") or "")
    assert await page.get_attribute("#job-view", "data-channel") == "closed"

    async def job_unwatched() -> bool:
        return f"job/{job_id}" not in await subscribers_of(session, hub)

    await wait_for(job_unwatched, "the page's stream without the job's channel")
    ticks = await page.get_attribute('.clock[data-timezone="Europe/London"]', "data-ticks")
    await page.wait_for_selector(
        f'.clock[data-timezone="Europe/London"]:not([data-ticks="{ticks}"])'
    )
    await one_connection(session, hub)


# -- the connection goes away --------------------------------------------------------------


async def test_cut_connection_reconnects_and_shows_missed_events_once(
    start_hub: StartHub, open_page: OpenPage, session: aiohttp.ClientSession
) -> None:
    """Browser → proxy → hub. The proxy drops the page's connection and refuses new ones while
    events are published: the page says "reconnecting", reconnects by itself once the link is
    back, and shows every event published meanwhile, each exactly once, in order."""
    hub = await start_hub()
    host, port = urlsplit(hub.url).hostname, urlsplit(hub.url).port
    assert host is not None and port is not None
    proxy = TcpProxy(host, port)
    await proxy.start()
    try:
        watched = await open_page(f"http://127.0.0.1:{proxy.port}/?clocks=Europe/London:1")
        page = watched.page
        await watch_in_console(page, "news")
        await channel_live(session, hub, "news", page)
        await state_is(page, "open")
        sent = [await publish(session, hub, "news", f"before-{n}") for n in (1, 2)]
        await page.wait_for_selector('#console-events tr[data-channel="news"] >> text=before-2')

        async with watched.away():
            proxy.cut()
            await state_is(page, "reconnecting")
            assert await page.text_content("#status-text") == "Reconnecting…"
            sent += [await publish(session, hub, "news", f"away-{n}") for n in range(1, 6)]
            await asyncio.sleep(1)  # several reconnection attempts fail meanwhile
            assert await console_data(page, "news") == ["before-1", "before-2"]
            ticks = await page.get_attribute('.clock[data-timezone="Europe/London"]', "data-ticks")
            proxy.restore()
            await state_is(page, "open")

        await page.wait_for_selector('#console-events tr[data-channel="news"] >> text=away-5')
        sent.append(await publish(session, hub, "news", "after-1"))
        await page.wait_for_selector('#console-events tr[data-channel="news"] >> text=after-1')
        expected = ["before-1", "before-2"] + [f"away-{n}" for n in range(1, 6)] + ["after-1"]
        assert await console_data(page, "news") == expected, "each exactly once, in order"
        ids = await page.eval_on_selector_all(
            '#console-events tbody tr[data-channel="news"]', "rows => rows.map(r => r.dataset.id)"
        )
        assert ids[::-1] == sent, "the ids are the hub's publish receipts"
        await page.wait_for_selector(
            f'.clock[data-timezone="Europe/London"]:not([data-ticks="{ticks}"])'
        )
        assert "back after" in (await page.text_content("#conn-log") or "")
        await one_connection(session, hub)
        await page.close()  # before the proxy goes, which would cut the page's stream once more
    finally:
        await proxy.close()


async def test_hub_restart_under_the_open_page(
    start_hub: StartHub, open_page: OpenPage, session: aiohttp.ClientSession, backplane: str
) -> None:
    """The hub stops and a new one starts on the same port: the page shows "reconnecting", then
    carries on. With in-memory history the old ids mean nothing to the new hub, so the page gets
    a reset; with Redis or NATS the new hub knows them and the page resumes without one."""
    first = await start_hub()
    port = urlsplit(first.url).port
    watched = await open_page(f"{first.url}/?clocks=Europe/London:1&watch=news")
    page = watched.page
    await channel_live(session, first, "news", page)
    await publish(session, first, "news", "old-1")
    await page.wait_for_selector('#console-events tr[data-channel="news"] >> text=old-1')

    async with watched.away():
        await first.stop()
        await state_is(page, "reconnecting")
        second = await start_hub(port=port)
        await state_is(page, "open")

    reset = '#console-events tr[data-kind="reset"]'
    if backplane == "memory":
        await page.wait_for_selector(reset)
        assert "unknown-id" in (await page.text_content(reset) or "")
    await channel_live(session, second, "news", page)
    await publish(session, second, "news", "new-1")
    await page.wait_for_selector('#console-events tr[data-channel="news"] >> text=new-1')
    assert await console_data(page, "news") == ["old-1", "new-1"]
    if backplane == "redis":
        assert await page.query_selector(reset) is None, "the new hub knew where the page was"
    ticks = await page.get_attribute('.clock[data-timezone="Europe/London"]', "data-ticks")
    await page.wait_for_selector(
        f'.clock[data-timezone="Europe/London"]:not([data-ticks="{ticks}"])'
    )
    await one_connection(session, second)


# -- a private channel through one-time tickets ---------------------------------------------

#: The page side: web/js/private.js (the README's recipe). The page's CSP allows connections to
#: its own origin only, as a real page's backend would be; here the hub itself issues the
#: tickets (no publish_tokens: loopback clients may, and the browser is one).
OPEN_PRIVATE = """async () => {
  const { PrivateStream } = await import("/assets/js/private.js");
  window.__got = [];
  window.__states = [];
  window.__tickets = [];
  const getTicket = async () => {
    const answer = await fetch("/tickets", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ channels: ["user/42"] }),
    });
    const { ticket } = await answer.json();
    window.__tickets.push(ticket);
    return ticket;
  };
  const stream = new PrivateStream(["user/42"], getTicket, { retryMs: 300 });
  stream.addEventListener("event", (e) => window.__got.push([e.detail.id, e.detail.data]));
  stream.addEventListener("state", (e) => window.__states.push(e.detail.state));
  window.__private = stream;
}"""


async def test_private_channel_through_tickets_across_a_cut_connection(
    start_hub: StartHub, open_page: OpenPage, session: aiohttp.ClientSession
) -> None:
    """Browser → proxy → hub, on a private channel opened with a one-time ticket. The proxy
    drops the connection while events are published; the page gets a new ticket, resumes with
    ?lastEventId=, and every event arrives exactly once, in order. No request is refused: a
    spent ticket is never presented again (any 4xx would fail the test)."""
    hub = await start_hub(private_channels="user/*")
    host, port = urlsplit(hub.url).hostname, urlsplit(hub.url).port
    assert host is not None and port is not None
    proxy = TcpProxy(host, port)
    await proxy.start()

    async def send(data: str) -> str:
        async with session.post(
            f"{hub.url}/channels/user/42/events", json={"data": data}
        ) as answer:
            assert answer.status == 202, await answer.text()
            return str((await answer.json())["id"])

    async def got(page: Page) -> list[list[str]]:
        found: list[list[str]] = await page.evaluate("window.__got")
        return found

    try:
        watched = await open_page(f"http://127.0.0.1:{proxy.port}/?clocks=Europe/London:1")
        page = watched.page
        await page.evaluate(OPEN_PRIVATE)
        await page.wait_for_function("() => window.__states.includes('open')")
        sent = [await send(f"before-{n}") for n in (1, 2)]
        await page.wait_for_function("() => window.__got.length === 2")
        async with watched.away():
            proxy.cut()
            await page.wait_for_function("() => window.__states.at(-1) === 'reconnecting'")
            sent += [await send(f"away-{n}") for n in range(1, 6)]
            await asyncio.sleep(1)  # several attempts, each with a new ticket, fail meanwhile
            assert len(await got(page)) == 2
            proxy.restore()
            await page.wait_for_function("() => window.__states.at(-1) === 'open'")
        await page.wait_for_function("() => window.__got.length >= 7")
        sent.append(await send("after-1"))
        await page.wait_for_function("() => window.__got.length >= 8")
        await asyncio.sleep(0.3)  # a duplicate would have arrived by now
        expected = ["before-1", "before-2", *(f"away-{n}" for n in range(1, 6)), "after-1"]
        received = await got(page)
        assert [data for _, data in received] == expected, "each exactly once, in order"
        assert [ident for ident, _ in received] == sent
        issued = await page.evaluate("window.__tickets")
        assert len(issued) >= 2 and len(set(issued)) == len(issued), "a new ticket each time"
        await page.evaluate("window.__private.close()")
        await page.close()
    finally:
        await proxy.close()


async def test_the_console_shows_a_presence_channel(
    start_hub: StartHub, open_page: OpenPage, session: aiohttp.ClientSession
) -> None:
    """Watching presence/<channel> in the console listens for its join and leave events."""
    hub = await start_hub(presence="rooms/*")
    page = (await open_page(f"{hub.url}/?watch=presence/rooms/a")).page
    await channel_live(session, hub, "presence/rooms/a", page)
    async with session.get(f"{hub.url}/channels/rooms/a/events", timeout=None) as member:
        assert member.status == 200
        row = '#console-events tr[data-channel="presence/rooms/a"][data-event="join"]'
        await page.wait_for_selector(row)
    await page.wait_for_selector(
        '#console-events tr[data-channel="presence/rooms/a"][data-event="leave"]'
    )
    assert '"change":1' in (await page.text_content(row) or "")
