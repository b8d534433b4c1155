"""Clocks that know DST: a tick's ``offset`` and ``abbreviation``, and ``event: offset``.

Every tick carries the zone's UTC offset (``+01:00``) and abbreviation (``BST``) beside ``iso``.
When they change (a DST transition), the channel sends ``event: offset`` with
``{"timezone", "offset", "abbreviation", "at", "channel"}`` at the transition's instant, before
its first tick in the new offset: once, from the channel's one ticker, to every subscriber alike;
whoever joins after the instant starts in the new offset and gets none.

Transitions come on their own dates, so these hubs' clocks read a time the test sets
(tests/support/clock_time.py, given to ``create_app``): the hub, its ticker and the sockets are
real; only the clock the ticker reads is the test's, and it moves only when the test moves it,
so each step yields exactly the frames of the instants it crossed.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from hub.ticker import Clock
from tests.clocks.test_clocks import tick_of
from tests.conftest import HubServer, MakeHub
from tests.support.clock_time import SetTime, utc
from tests.support.helpers import gauge, subscribe_raw
from tests.support.sse_client import Message, Stream

LONDON = "Europe/London"
#: 2027's transitions in London: the last Sundays of March and October at 01:00 UTC
SPRING = utc("2027-03-28T01:00:00Z")
AUTUMN = utc("2027-10-31T01:00:00Z")


def offset_of(message: Message, channel: str) -> dict[str, Any]:
    """Check an ``event: offset`` frame against the contract; returns its data."""
    assert message.event == "offset", message
    assert not message.has_id, "offset frames are ephemeral, like ticks: no id: line"
    data = orjson.loads(message.data)
    assert set(data) == {"timezone", "offset", "abbreviation", "at", "channel"}, data
    assert data["channel"] == channel
    timezone = data["timezone"]
    assert channel.startswith(f"time/{timezone}/")
    at = datetime.fromisoformat(data["at"])
    # "at" is the transition's instant, told in the new offset: the zone's labels from then on
    assert at.isoformat() == data["at"] and data["at"].endswith(data["offset"])
    local = at.astimezone(ZoneInfo(timezone))
    assert local.utcoffset() == at.utcoffset() and local.tzname() == data["abbreviation"]
    return dict(data)


async def step(clock: SetTime, stream: Stream, seconds: float, timezone: str) -> dict[str, Any]:
    """Move the clock on and return the tick that comes of it (the next frame must be one)."""
    clock.advance(seconds)
    return tick_of(await stream.next(timeout=5), timezone, now=clock.time)


@pytest.mark.any_backplane  # clocks tick in each process: no backplane in the way
async def test_spring_forward_in_london(make_hub: MakeHub) -> None:
    """Across 2027-03-28 01:00 UTC: GMT +00:00 ticks up to 00:59:59, then ``event: offset``
    (BST, +01:00, at 02:00:00+01:00), then the tick at 02:00:00+01:00 and BST ticks from there,
    with no second offset event."""
    clock = SetTime(SPRING - 2)
    hub = await make_hub(clock_time=clock)
    channel = f"time/{LONDON}/1"
    stream = await hub.subscribe(f"/channels/{channel}/events")
    first = tick_of(await stream.next(timeout=5), LONDON, channel, now=clock.time)
    assert (first["iso"], first["offset"], first["abbreviation"]) == (
        "2027-03-28T00:59:58+00:00",
        "+00:00",
        "GMT",
    )
    before = await step(clock, stream, 1, LONDON)
    assert (before["iso"], before["abbreviation"]) == ("2027-03-28T00:59:59+00:00", "GMT")

    clock.advance(1)
    change = offset_of(await stream.next(timeout=5), channel)
    assert change == {
        "timezone": LONDON,
        "offset": "+01:00",
        "abbreviation": "BST",
        "at": "2027-03-28T02:00:00+01:00",
        "channel": channel,
    }
    after = tick_of(await stream.next(timeout=5), LONDON, channel, now=clock.time)
    assert (after["iso"], after["offset"], after["abbreviation"]) == (
        "2027-03-28T02:00:00+01:00",
        "+01:00",
        "BST",
    )
    assert after["dateTime"] == "28/3/2027 2:0:0"  # 01:00 local never happened that night
    assert after["id"] == before["id"] + 1  # one second on, whatever the wall clock did
    later = await step(clock, stream, 1, LONDON)
    assert (later["iso"], later["abbreviation"]) == ("2027-03-28T02:00:01+01:00", "BST")


@pytest.mark.any_backplane
async def test_fall_back_in_london_repeats_the_hour(make_hub: MakeHub) -> None:
    """Across 2027-10-31 01:00 UTC (BST back to GMT) local time goes 01:45 BST, then 01:00 GMT:
    quarter-hour ticks repeat ``dateTime`` for an hour; ``iso``, ``offset`` and ``id`` tell the
    two apart, and ``event: offset`` comes between them."""
    clock = SetTime(AUTUMN - 3600)
    hub = await make_hub(clock_time=clock)
    channel = f"time/{LONDON}/900"
    stream = await hub.subscribe(f"/channels/{channel}/events")
    ticks = [tick_of(await stream.next(timeout=5), LONDON, channel, now=clock.time)]
    for _ in range(3):
        ticks.append(await step(clock, stream, 900, LONDON))
    clock.advance(900)
    change = offset_of(await stream.next(timeout=5), channel)
    assert (change["offset"], change["abbreviation"], change["at"]) == (
        "+00:00",
        "GMT",
        "2027-10-31T01:00:00+00:00",
    )
    ticks.append(tick_of(await stream.next(timeout=5), LONDON, channel, now=clock.time))
    for _ in range(3):
        ticks.append(await step(clock, stream, 900, LONDON))

    assert [tick["iso"] for tick in ticks] == [
        "2027-10-31T01:00:00+01:00",
        "2027-10-31T01:15:00+01:00",
        "2027-10-31T01:30:00+01:00",
        "2027-10-31T01:45:00+01:00",
        "2027-10-31T01:00:00+00:00",
        "2027-10-31T01:15:00+00:00",
        "2027-10-31T01:30:00+00:00",
        "2027-10-31T01:45:00+00:00",
    ]
    assert [tick["abbreviation"] for tick in ticks] == ["BST"] * 4 + ["GMT"] * 4
    # the same wall-clock text twice; the ids (and instants) still only grow, one step apart
    assert [tick["dateTime"] for tick in ticks[:4]] == [tick["dateTime"] for tick in ticks[4:]]
    assert [tick["id"] for tick in ticks] == list(range(ticks[0]["id"], ticks[0]["id"] + 8))


@pytest.mark.any_backplane
async def test_one_offset_event_per_subscriber_from_one_ticker(make_hub: MakeHub) -> None:
    """Three subscribers (two routes) of the London clock get the same bytes at the transition:
    one ``event: offset`` frame each, right before the same first BST tick, from one ticker."""
    clock = SetTime(SPRING - 1)
    hub = await make_hub(clock_time=clock)
    channel = f"time/{LONDON}/1"
    raws = [
        await subscribe_raw(hub, path)
        for path in (
            f"/channels/{channel}/events",
            f"/event-stream?city={LONDON}&sec=1",
            f"/events?channel=orders&channel={channel}",
        )
    ]
    for stream, _ in raws:
        tick_of(await stream.next(timeout=5), LONDON, channel, now=clock.time)
    assert await gauge(hub, "hub_tickers") == 1
    clock.advance(1)
    expected_offset = (
        b'event: offset\ndata: {"timezone":"Europe/London","offset":"+01:00",'
        b'"abbreviation":"BST","at":"2027-03-28T02:00:00+01:00","channel":"time/Europe/London/1"}'
        b"\n\n"
    )
    for stream, parser in raws:
        offset_of(await stream.next(timeout=5), channel)
        tick = tick_of(await stream.next(timeout=5), LONDON, channel, now=clock.time)
        assert tick["iso"] == "2027-03-28T02:00:00+01:00"
        # the offset frame, then the tick: exact bytes, the tick's old fields first as before
        expected_tick = (
            b'event: UPDATE\ndata: {"id":%d,"dateTime":"28/3/2027 2:0:0",'
            b'"iso":"2027-03-28T02:00:00+01:00","timezone":"Europe/London",'
            b'"channel":"time/Europe/London/1","interval":1,"offset":"+01:00",'
            b'"abbreviation":"BST"}\n\n' % tick["id"]
        )
        assert bytes(parser.raw).endswith(expected_offset + expected_tick), bytes(parser.raw)
        assert bytes(parser.raw).count(b"event: offset") == 1


@pytest.mark.any_backplane
async def test_joining_after_the_transition_gets_no_offset_event(make_hub: MakeHub) -> None:
    """A subscriber who joins after the ticker announced the change gets the new offset in its
    first frame, and no ``event: offset`` of its own; those already there got theirs once."""
    clock = SetTime(SPRING - 1)
    hub = await make_hub(clock_time=clock)
    channel = f"time/{LONDON}/1"
    early = await hub.subscribe(f"/channels/{channel}/events")
    tick_of(await early.next(timeout=5), LONDON, channel, now=clock.time)
    clock.advance(1)
    offset_of(await early.next(timeout=5), channel)
    tick_of(await early.next(timeout=5), LONDON, channel, now=clock.time)

    late = await hub.subscribe(f"/channels/{channel}/events")
    first = tick_of(await late.next(timeout=5), LONDON, channel, now=clock.time)
    assert (first["iso"], first["abbreviation"]) == ("2027-03-28T02:00:00+01:00", "BST")
    clock.advance(1)
    for stream in (early, late):
        tick = tick_of(await stream.next(timeout=5), LONDON, channel, now=clock.time)
        assert tick["iso"] == "2027-03-28T02:00:01+01:00"  # a tick, not an offset frame


@pytest.mark.any_backplane
async def test_a_clock_off_the_transition_announces_it_at_its_instant(make_hub: MakeHub) -> None:
    """A 7-second clock's ticks do not land on 01:00:00 UTC: the notice comes at that instant
    on its own, before the first BST tick; a subscriber who joins after it starts in BST and
    gets no notice; both then get the same BST tick."""
    clock = SetTime(SPRING - 1)
    hub = await make_hub(clock_time=clock)
    channel = f"time/{LONDON}/7"
    early = await hub.subscribe(f"/channels/{channel}/events")
    first = tick_of(await early.next(timeout=5), LONDON, channel, now=clock.time)
    assert first["abbreviation"] == "GMT"
    assert SPRING % 7 != 0, "the transition must fall between ticks"
    clock.set(SPRING)
    change = offset_of(await early.next(timeout=5), channel)
    assert (change["abbreviation"], change["at"]) == ("BST", "2027-03-28T02:00:00+01:00")

    late = await hub.subscribe(f"/channels/{channel}/events")
    joined = tick_of(await late.next(timeout=5), LONDON, channel, now=clock.time)
    assert (joined["iso"], joined["abbreviation"]) == ("2027-03-28T02:00:00+01:00", "BST")
    assert joined["id"] == first["id"], "no tick instant went by: the id of the last one"
    clock.set((SPRING // 7 + 1) * 7)
    ticks = [
        tick_of(await s.next(timeout=5), LONDON, channel, now=clock.time) for s in (early, late)
    ]
    assert ticks[0] == ticks[1] and ticks[0]["id"] == first["id"] + 1
    assert ticks[0]["abbreviation"] == "BST"


async def test_first_frame_while_a_notice_is_late() -> None:
    """A subscriber who joins past a transition the ticker has not announced yet (it wakes a
    moment late) gets the time just before it, then the notice: never the new offset first.

    Driven through ``Clock`` itself: over HTTP the ticker always runs before a subscribe does.
    """
    emitted: asyncio.Queue[bytes] = asyncio.Queue()
    time_source = SetTime(SPRING - 1)
    clock = Clock(
        f"time/{LONDON}/7", lambda _channel, frame: emitted.put_nowait(frame), time_source
    )
    clock.start()
    try:
        await asyncio.sleep(0)  # the ticker waits for the transition
        time_source.set(SPRING + 1)  # past it, before the ticker could run
        joined = orjson.loads(_data(clock.frame(0.0)))
        notice = (await asyncio.wait_for(emitted.get(), 2)).decode()
        after = orjson.loads(_data(clock.frame(0.0)))
    finally:
        task = clock.stop()
    assert task is not None
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert (joined["iso"], joined["abbreviation"]) == ("2027-03-28T00:59:59+00:00", "GMT")
    assert notice.startswith("event: offset\n")
    assert (after["iso"], after["abbreviation"]) == ("2027-03-28T02:00:01+01:00", "BST")


def _data(frame: bytes) -> str:
    (line,) = [line for line in frame.decode().split("\n") if line.startswith("data: ")]
    return line.removeprefix("data: ")


@pytest.mark.parametrize(
    ("timezone", "changes"),
    [
        (
            LONDON,
            [
                ("+01:00", "BST", "2027-03-28T02:00:00+01:00"),
                ("+00:00", "GMT", "2027-10-31T01:00:00+00:00"),
            ],
        ),
        ("Asia/Kathmandu", []),  # +05:45 all year
        ("Asia/Kolkata", []),  # +05:30 all year: no DST
    ],
)
@pytest.mark.any_backplane
async def test_a_year_of_offsets(
    make_hub: MakeHub, timezone: str, changes: list[tuple[str, str, str]]
) -> None:
    """Through 2027 a month at a time: London announces its two transitions and no more; a zone
    without DST (Kolkata) or with a quarter-hour offset (Kathmandu) announces none, and every
    tick carries its one offset."""
    zone = ZoneInfo(timezone)
    clock = SetTime(utc("2027-01-01T00:00:00Z"))
    hub = await make_hub(clock_time=clock)
    channel = f"time/{timezone}/3600"
    stream = await hub.subscribe(f"/channels/{channel}/events")
    ticks = [tick_of(await stream.next(timeout=5), timezone, channel, now=clock.time)]
    seen: list[tuple[str, str, str]] = []
    for month in range(2, 13):
        # A jump past many ticks: the late tick comes first (as after a stalled process), then
        # the ticker skips to the hour after the new time, whose tick is the first in any new
        # offset.
        clock.set(utc(f"2027-{month:02d}-01T00:00:00Z"))
        late = await stream.next(timeout=5)
        clock.advance(3600)
        message = await stream.next(timeout=5)
        if message.event == "offset":
            data = offset_of(message, channel)
            seen.append((data["offset"], data["abbreviation"], data["at"]))
            message = await stream.next(timeout=5)
        ticks.append(tick_of(late, timezone, channel, now=late_instant(late)))
        ticks.append(tick_of(message, timezone, channel, now=clock.time))
    assert seen == changes
    for tick in ticks:
        moment = datetime.fromisoformat(tick["iso"]).astimezone(zone)
        assert (tick["offset"], tick["abbreviation"]) == (
            tick["iso"][19:],
            moment.tzname(),
        )
    if timezone == "Asia/Kathmandu":
        assert {tick["offset"] for tick in ticks} == {"+05:45"}
    if timezone == "Asia/Kolkata":
        assert {(tick["offset"], tick["abbreviation"]) for tick in ticks} == {("+05:30", "IST")}


def late_instant(message: Message) -> float:
    """The instant a tick tells (for a late tick, which tells its own instant, not now)."""
    return datetime.fromisoformat(orjson.loads(message.data)["iso"]).timestamp()


@pytest.mark.any_backplane
async def test_first_frame_carries_the_labels_on_the_system_clock(hub: HubServer) -> None:
    """On a hub's own (system) clock the first frame and the ticks carry offset and abbreviation
    as the zone gives them now: Kathmandu's quarter-hour offset included."""
    channel = "time/Asia/Kathmandu/1"
    stream = await hub.subscribe(f"/channels/{channel}/events")
    for _ in range(2):
        tick = tick_of(await stream.next(timeout=3), "Asia/Kathmandu", channel)
        assert tick["offset"] == "+05:45" and tick["iso"].endswith("+05:45")
        now = datetime.fromisoformat(tick["iso"]).astimezone(ZoneInfo("Asia/Kathmandu"))
        assert tick["abbreviation"] == now.tzname()  # "+0545": tzdata has no letters for it
