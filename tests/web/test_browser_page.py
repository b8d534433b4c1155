"""The page's rough edges, in Chromium at 1280 and 390 px: the console's last event id, a job
started beside a live channel (its replay must not replay that channel), a job's page that
opens on the job (and says so when the job is unknown), and a layout that fits a phone."""

from __future__ import annotations

import aiohttp
import pytest

from tests.support.browser import (
    BROWSER_LOOP,
    OpenPage,
    StartHub,
    channel_live,
    console_data,
    done_event,
    publish,
)

pytestmark = [pytest.mark.browser, pytest.mark.any_backplane, BROWSER_LOOP]

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


async def test_last_event_id_follows_the_events(
    start_hub: StartHub, open_page: OpenPage, session: aiohttp.ClientSession
) -> None:
    """The console's "Last event id" shows the newest id as events arrive, not a dash."""
    hub = await start_hub()
    page = (await open_page(f"{hub.url}/?watch=orders")).page
    await channel_live(session, hub, "orders", page)
    first = await publish(session, hub, "orders", {"n": 1})
    await page.wait_for_function(
        "(id) => document.getElementById('conn-last-id').textContent === id", arg=first
    )
    second = await publish(session, hub, "orders", {"n": 2})
    await page.wait_for_function(
        "(id) => document.getElementById('conn-last-id').textContent === id", arg=second
    )


async def test_a_job_started_beside_a_live_channel_replays_only_the_job(
    start_hub: StartHub, open_page: OpenPage, session: aiohttp.ClientSession
) -> None:
    """Watching orders without replay, then starting a job: the new stream replays the job's
    channel only (replay=job/<id>), so the old orders never show, and live orders still do,
    once each."""
    hub = await start_hub()
    await publish(session, hub, "orders", "old")
    page = (await open_page(f"{hub.url}/?watch=orders")).page
    await channel_live(session, hub, "orders", page)
    await publish(session, hub, "orders", "before the job")
    await page.wait_for_function(
        "() => document.querySelectorAll('#console-events tbody tr').length === 1"
    )
    await page.click("#job-start")
    await page.wait_for_function("() => document.getElementById('job-id').textContent !== ''")
    job_id = await page.text_content("#job-id")
    assert job_id
    # the stream that took the job's channel on (read while the job runs: a job's channel may be
    # closed once it is done, and the page then drops it from its stream)
    await page.wait_for_function(
        "(id) => document.getElementById('conn-url').textContent.includes(`replay=job/${id}`)",
        arg=job_id,
    )
    url = await page.text_content("#conn-url")
    assert url is not None and "from=start" not in url
    await done_event(session, hub, job_id)
    await page.wait_for_selector('#job-view[data-status="done"]')
    await publish(session, hub, "orders", "after the job")
    await page.wait_for_function(
        "() => document.querySelectorAll('#console-events tbody tr[data-channel=orders]')"
        ".length === 2"
    )
    assert await console_data(page, "orders") == ["before the job", "after the job"]


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280", "390"])
async def test_unknown_job_page_opens_on_the_job_and_says_unknown(
    start_hub: StartHub, open_page: OpenPage, viewport: dict[str, int]
) -> None:
    """/jobs/<id> puts the job first; a job the hub holds nothing for is "unknown or
    expired", not "Progress 0 %" forever."""
    hub = await start_hub()
    page = (await open_page(f"{hub.url}/jobs/nosuchjob1", viewport=viewport)).page
    await page.wait_for_selector('#job-view[data-status="unknown"]')
    message = await page.text_content("#job-message")
    assert message is not None and message.startswith("Unknown or expired job")
    assert not await page.is_visible("#job-progress")
    first = await page.evaluate("document.getElementById('main').firstElementChild.id")
    assert first == "job"
    top = await page.evaluate("document.getElementById('job-view').getBoundingClientRect().top")
    assert top < viewport["height"], "the job is above the fold"


#: What does not fit: page overflow, tables wider than their box, cut placeholders, and
#: clock offsets ("UTC-05:00") broken over two lines.
LAYOUT_PROBLEMS = """() => {
  const problems = [];
  const root = document.documentElement;
  if (root.scrollWidth > root.clientWidth) problems.push(`page ${root.scrollWidth}px wide`);
  for (const wrap of document.querySelectorAll('.table-wrap')) {
    if (wrap.scrollWidth > wrap.clientWidth + 1) {
      problems.push(`${wrap.firstElementChild.id} scrolls sideways`);
    }
  }
  for (const card of document.querySelectorAll('.card')) {
    for (const element of card.querySelectorAll('*')) {
      const box = element.getBoundingClientRect();
      if (box.width > 0 && box.right > card.getBoundingClientRect().right + 1) {
        problems.push(`#${element.id || element.tagName} sticks out of #${card.id}`);
        break;
      }
    }
  }
  for (const list of document.querySelectorAll('.log, .facts')) {
    if (list.scrollWidth > list.clientWidth + 1) {
      problems.push(`${list.id || list.className} overflows`);
    }
  }
  const canvas = document.createElement('canvas').getContext('2d');
  for (const input of document.querySelectorAll('input[placeholder]')) {
    const style = getComputedStyle(input);
    canvas.font = `${style.fontSize} ${style.fontFamily}`;
    const room = input.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    if (canvas.measureText(input.placeholder).width > room) {
      problems.push(`placeholder of ${input.id} cut`);
    }
  }
  for (const offset of document.querySelectorAll('.clock .zone .nowrap')) {
    if (offset.getClientRects().length !== 1) problems.push(`offset ${offset.textContent} wraps`);
  }
  // table cells of words (headers, event names, kinds) break between words, never inside one;
  // ids and names with digits, "/" or ":" may wrap anywhere
  for (const cell of document.querySelectorAll('.table-wrap th, .table-wrap td:not(.data)')) {
    const text = cell.firstChild;
    if (!text || text.nodeType !== Node.TEXT_NODE || !/^[A-Za-z ]+$/.test(text.textContent)) {
      continue;
    }
    for (const word of text.textContent.matchAll(/[A-Za-z]+/g)) {
      const range = document.createRange();
      range.setStart(text, word.index);
      range.setEnd(text, word.index + word[0].length);
      if (range.getClientRects().length > 1) problems.push(`"${word[0]}" breaks in a table cell`);
    }
  }
  return problems;
}"""


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280", "390"])
async def test_the_page_fits_the_screen(
    start_hub: StartHub,
    open_page: OpenPage,
    session: aiohttp.ClientSession,
    viewport: dict[str, int],
) -> None:
    """Filled with a job, events with long data, a filtered watch, subscriber rows and log
    lines, nothing overflows sideways, the search placeholder shows whole, and UTC offsets stay
    in one piece."""
    hub = await start_hub()
    clocks = "America/New_York:1,Asia/Kolkata:5,America/Argentina/ComodRivadavia:2"
    watch = "orders,prices?event=price%26tag=region:eu|us%26tag=tier:gold"  # and a filtered one
    page = (await open_page(f"{hub.url}/?watch={watch}&clocks={clocks}", viewport=viewport)).page
    await channel_live(session, hub, "orders", page)
    for n in range(3):
        await publish(session, hub, "orders", {"order": 1041 + n, "customer": "A" * 60})
    await page.wait_for_selector('#console-channels li[data-channel="prices"][data-state="open"]')
    price = {"event": "price", "data": {"eur": 101.25}, "tags": {"region": "eu", "tier": "gold"}}
    async with session.post(f"{hub.url}/channels/prices/events", json=price) as answer:
        assert answer.status == 202
    await page.wait_for_selector('#console-events tr[data-channel="prices"]')
    await page.wait_for_selector('.clock[data-timezone="America/New_York"]:not([data-ticks="0"])')
    await page.click("#job-start")
    await page.wait_for_selector("#job-view:not([hidden])")
    await page.click("#channels-refresh")
    await page.wait_for_selector("#channel-table tbody tr")
    assert await page.evaluate(LAYOUT_PROBLEMS) == []


async def test_a_tick_after_an_unlistened_event_is_filed_under_its_clock(
    start_hub: StartHub, open_page: OpenPage, session: aiohttp.ClientSession
) -> None:
    """An event of a type the page does not listen for moves the browser's lastEventId unseen;
    the next clock tick (no id) was then shown as an UPDATE of that event's channel, with its
    id. Ticks go to their clock, and the console shows no UPDATE row under the channel."""
    hub = await start_hub()
    page = (await open_page(f"{hub.url}/?watch=orders&clocks=Asia/Kolkata:1")).page
    await channel_live(session, hub, "orders", page)
    clock = '.clock[data-timezone="Asia/Kolkata"]'
    await page.wait_for_selector(f'{clock}:not([data-ticks="0"])')
    async with session.post(
        f"{hub.url}/channels/orders/events", json={"event": "x", "data": {"n": 1}}
    ) as answer:
        assert answer.status == 202
    ticks = int(await page.get_attribute(clock, "data-ticks") or 0)
    await page.wait_for_function(
        "([selector, seen]) => Number(document.querySelector(selector).dataset.ticks) >= seen + 2",
        arg=[clock, ticks],
    )
    misfiled = await page.eval_on_selector_all(
        '#console-events tbody tr[data-channel="orders"]',
        "rows => rows.filter(row => row.dataset.event === 'UPDATE').length",
    )
    assert misfiled == 0


async def test_an_event_whose_data_names_a_clock_is_its_channels(
    start_hub: StartHub, open_page: OpenPage, session: aiohttp.ClientSession
) -> None:
    """An UPDATE of an ordinary channel whose data names a clock (a dashboard relaying one) is
    that channel's event, shown in the console with its id, not taken for a tick of a clock the
    page does not watch (and dropped); the event after it follows it."""
    hub = await start_hub()
    page = (await open_page(f"{hub.url}/?watch=orders")).page
    await channel_live(session, hub, "orders", page)
    relayed = {"channel": "time/Asia/Kolkata/1", "iso": "2026-12-07T19:00:00+05:30"}
    async with session.post(
        f"{hub.url}/channels/orders/events", json={"event": "UPDATE", "data": relayed}
    ) as answer:
        assert answer.status == 202
        first = (await answer.json())["id"]
    second = await publish(session, hub, "orders", {"n": 2})
    await page.wait_for_selector(f'#console-events tr[data-id="{second}"]')
    rows = await page.eval_on_selector_all(
        '#console-events tbody tr[data-channel="orders"]',
        "rows => rows.map(row => [row.dataset.id, row.dataset.event])",
    )
    assert rows[::-1] == [[first, "UPDATE"], [second, "message"]]
