"""Clock channels: ``/event-stream?city=<timezone>&sec=<n>`` and ``time/<timezone>/<n>``.

A clock streams ``event: UPDATE`` frames with ``{"id", "dateTime", "iso", "timezone", "channel",
"interval"}`` and no ``id:`` line; all its clients share one ticker, which stops soon after the
last one leaves. A tick's ``id`` is the number of whole intervals since the epoch at its instant.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

import orjson
import pytest

from hub.ticker import Clock
from tests.conftest import HubServer, MakeHub
from tests.support.helpers import eventually, gauge, subscribe_raw
from tests.support.sse_client import Message, Stream

#: D/M/YYYY H:M:S without zero padding, as the original server's getFormattedDate() wrote it.
DATE_TIME_RE = re.compile(
    r"(?:[1-9]|[12][0-9]|3[01])/(?:[1-9]|1[0-2])/[0-9]{4} "
    r"(?:[0-9]|1[0-9]|2[0-3]):(?:[0-9]|[1-5][0-9]):(?:[0-9]|[1-5][0-9])"
)


OFFSET_RE = re.compile(r"[+-](?:0[0-9]|1[0-4]):[0-5][0-9]")


def tick_of(
    message: Message, timezone: str, channel: str | None = None, now: float | None = None
) -> dict[str, Any]:
    """Check one clock frame against the contract (of ``channel`` if given); returns its data.
    ``now``: the time it should tell (the system clock's unless the hub's clocks read another)."""
    assert message.event == "UPDATE"
    assert not message.has_id, "clock ticks carry no id: line"
    data = orjson.loads(message.data)
    assert set(data) == {
        *("id", "dateTime", "iso", "timezone", "channel", "interval"),
        *("offset", "abbreviation"),  # since issue 23: clocks that know DST
    }
    assert data["timezone"] == timezone
    interval = data["interval"]
    assert isinstance(interval, int) and not isinstance(interval, bool)
    assert data["channel"] == f"time/{timezone}/{interval}"
    if channel is not None:
        assert data["channel"] == channel
    assert isinstance(data["id"], int) and not isinstance(data["id"], bool) and data["id"] >= 0
    moment = datetime.fromisoformat(data["iso"])
    # whole intervals since 1970-01-01T00:00Z at the instant the tick tells
    assert data["id"] == int(moment.timestamp()) // interval, data
    zone = ZoneInfo(timezone)
    assert moment.utcoffset() == moment.astimezone(zone).utcoffset(), "iso has the zone's offset"
    assert moment.microsecond == 0
    assert DATE_TIME_RE.fullmatch(data["dateTime"]), data["dateTime"]
    local = moment.astimezone(zone)
    assert data["dateTime"] == (
        f"{local.day}/{local.month}/{local.year} {local.hour}:{local.minute}:{local.second}"
    )
    # the zone's offset as iso ends with it, and its abbreviation at that instant (tzdata's
    # "+0545" where the zone has none of its own)
    assert OFFSET_RE.fullmatch(data["offset"]) and data["iso"].endswith(data["offset"]), data
    assert data["abbreviation"] == local.tzname(), data
    told = time.time() if now is None else now
    assert abs(moment.timestamp() - told) < 3, "the tick tells the current time"
    return dict(data)


async def next_tick_after(stream: Stream, instant: float, timezone: str) -> dict[str, Any]:
    """The first tick for a moment later than ``instant`` (skips earlier frames)."""
    while True:
        data = tick_of(await stream.next(timeout=3), timezone)
        if datetime.fromisoformat(data["iso"]).timestamp() > instant:
            return data


async def channels_listed(hub: HubServer) -> dict[str, dict[str, Any]]:
    async with hub.session.get(f"{hub.url}/channels") as response:
        assert response.status == 200
        return {c["name"]: c for c in await response.json()}


@pytest.mark.any_backplane
async def test_event_stream_clock(hub: HubServer) -> None:
    """``/event-stream?city=Asia/Calcutta&sec=1``: UPDATE frames every second in that zone."""
    stream, parser = await subscribe_raw(hub, "/event-stream?city=Asia/Calcutta&sec=1")
    first = tick_of(await stream.next(timeout=3), "Asia/Calcutta", "time/Asia/Calcutta/1")
    assert datetime.fromisoformat(first["iso"]).utcoffset() == timedelta(hours=5, minutes=30)
    second = await next_tick_after(
        stream, datetime.fromisoformat(first["iso"]).timestamp(), "Asia/Calcutta"
    )
    third = tick_of(await stream.next(timeout=3), "Asia/Calcutta")
    # ticks count up by one, one interval apart, on whole seconds
    assert third["id"] == second["id"] + 1
    step = datetime.fromisoformat(third["iso"]) - datetime.fromisoformat(second["iso"])
    assert step == timedelta(seconds=1)
    assert not any(line.startswith(b"id:") for line in bytes(parser.raw).split(b"\n"))


@pytest.mark.parametrize(
    ("timezone", "offsets"),
    [
        ("UTC", {timedelta(0)}),
        ("Asia/Kolkata", {timedelta(hours=5, minutes=30)}),
        ("Asia/Kathmandu", {timedelta(hours=5, minutes=45)}),
        ("America/St_Johns", {timedelta(hours=-3, minutes=-30), timedelta(hours=-2, minutes=-30)}),
        ("Europe/London", {timedelta(0), timedelta(hours=1)}),
    ],
)
@pytest.mark.any_backplane
async def test_clock_time_zones(hub: HubServer, timezone: str, offsets: set[timedelta]) -> None:
    """Each timezone's clock tells local time with that zone's UTC offset (DST included)."""
    stream = await hub.subscribe(f"/event-stream?city={timezone}&sec=1")
    data = tick_of(await stream.next(timeout=3), timezone)
    assert datetime.fromisoformat(data["iso"]).utcoffset() in offsets


@pytest.mark.any_backplane
async def test_no_zero_padding(hub: HubServer) -> None:
    """Single-digit fields stay single digits ("5:7:3", not "05:07:03"), whatever the time now.

    The test picks a timezone where it is between 1 and 8 o'clock right now (with offsets from
    -12 to +14 hours there always is one), so the hour is a single digit.
    """
    now = datetime.now(UTC)
    timezone = next(
        name
        for name in sorted(available_timezones())
        if 1 <= now.astimezone(ZoneInfo(name)).hour <= 8
    )
    stream = await hub.subscribe(f"/event-stream?city={timezone}&sec=1")
    data = tick_of(await stream.next(timeout=3), timezone)
    hour = data["dateTime"].split(" ")[1].split(":")[0]
    assert len(hour) == 1, data


@pytest.mark.any_backplane
async def test_clients_share_one_ticker(hub: HubServer) -> None:
    """Every client of a clock, on every route, is fed by ONE ticker and sees the same ticks."""
    paths = [
        "/event-stream?city=Europe/Paris&sec=1",
        "/event-stream?city=Europe/Paris&sec=1",
        "/channels/time/Europe/Paris/1/events",
        "/events?channel=time/Europe/Paris/1",
        "/events?channel=other&channel=time/Europe/Paris/1",
    ]
    streams = [await hub.subscribe(path) for path in paths]
    connected = time.time()
    assert await gauge(hub, "hub_tickers") == 1
    listed = (await channels_listed(hub))["time/Europe/Paris/1"]
    assert listed == {
        "name": "time/Europe/Paris/1",
        "subscribers": 5,
        "clock": True,
        "last_id": None,
    }
    ticks = [await next_tick_after(stream, connected, "Europe/Paris") for stream in streams]
    assert all(tick == ticks[0] for tick in ticks), ticks


@pytest.mark.any_backplane
async def test_several_clocks_on_one_stream(hub: HubServer) -> None:
    """Several clocks multiplex on one connection, one ticker per clock channel."""
    stream = await hub.subscribe(
        "/events?channel=time/UTC/1&channel=time/Asia/Tokyo/1&channel=time/UTC/2"
    )
    assert await gauge(hub, "hub_tickers") == 3
    assert await gauge(hub, "hub_subscribers") == 1
    seen: set[str] = set()
    async with asyncio.timeout(4):
        while seen != {"UTC", "Asia/Tokyo"}:
            message = await stream.next(timeout=3)
            seen.add(orjson.loads(message.data)["timezone"])


@pytest.mark.any_backplane
async def test_same_zone_clocks_told_apart_by_channel(hub: HubServer) -> None:
    """Two clocks of one timezone with different intervals on one stream: each tick names its
    channel and interval, so a client can route it, and each channel ticks at its own interval."""
    one, two = "time/Asia/Tokyo/1", "time/Asia/Tokyo/2"
    stream = await hub.subscribe(f"/events?channel={one}&channel={two}")
    joined = time.time()
    ticks: dict[str, list[dict[str, Any]]] = {one: [], two: []}
    async with asyncio.timeout(8):
        while len(ticks[one]) < 4 or len(ticks[two]) < 3:
            data = tick_of(await stream.next(timeout=3), "Asia/Tokyo")
            ticks[data["channel"]].append(data)
    for channel, interval in ((one, 1), (two, 2)):
        assert {tick["interval"] for tick in ticks[channel]} == {interval}
        instants = [int(datetime.fromisoformat(t["iso"]).timestamp()) for t in ticks[channel]]
        ticked = [instant for instant in instants if instant > joined]  # not the first frame
        assert ticked and all(instant % interval == 0 for instant in ticked), (channel, instants)
        steps = {b - a for a, b in itertools.pairwise(ticked)}
        assert steps == {interval}, (channel, instants)
        ids = [tick["id"] for tick in ticks[channel]]
        assert ids == sorted(set(ids)), f"{channel}: ids grow and never repeat: {ids}"


@pytest.mark.any_backplane
async def test_tick_ids_count_intervals_since_the_epoch(make_hub: MakeHub) -> None:
    """A tick's id is floor(t / interval) for its instant t: the first frame (the current time)
    has the id of the last tick instant at or before now, and two hub processes that share
    nothing give the same tick the same id."""
    first_hub, second_hub = await make_hub(), await make_hub()
    channel = "time/UTC/5"
    before = time.time()
    streams = [await h.subscribe(f"/channels/{channel}/events") for h in (first_hub, second_hub)]
    after = time.time()
    for stream in streams:
        now = tick_of(await stream.next(timeout=3), "UTC", channel)
        assert int(before) // 5 <= now["id"] <= int(after) // 5, (before, now, after)
    # the next tick of each hub: the same instant, the same id
    ticks = [tick_of(await stream.next(timeout=7), "UTC", channel) for stream in streams]
    assert ticks[0] == ticks[1]
    assert ticks[0]["id"] * 5 == datetime.fromisoformat(ticks[0]["iso"]).timestamp()


@pytest.mark.any_backplane
async def test_tick_ids_never_repeat_across_leave_and_rejoin(hub: HubServer) -> None:
    """When a clock's last subscriber leaves, its ticker stops; when someone rejoins later, ids
    carry on from the epoch count instead of starting over at 0."""
    stream = await hub.subscribe("/event-stream?city=UTC&sec=1")
    seen = [tick_of(await stream.next(timeout=3), "UTC")["id"]]
    seen.append(tick_of(await stream.next(timeout=3), "UTC")["id"])
    await stream.close()
    await eventually(lambda: _gauge_is(hub, "hub_tickers", 0), what="ticker stopped")
    await asyncio.sleep(max(0.0, seen[-1] + 1.1 - time.time()))  # a tick instant goes by unseen
    again = await hub.subscribe("/event-stream?city=UTC&sec=1")
    later = [tick_of(await again.next(timeout=3), "UTC")["id"] for _ in range(2)]
    assert seen[-1] < later[0] < later[1], (seen, later)
    assert later[1] == later[0] + 1


async def test_first_frame_never_repeats_a_late_tick() -> None:
    """The ticker wakes a moment after a tick instant; a subscriber joining in that moment gets
    the time just before it, then the late tick: never the same id twice in a row.

    Driven through ``Clock`` itself, since the window is a millisecond wide over HTTP.
    """
    emitted: asyncio.Queue[bytes] = asyncio.Queue()
    clock = Clock("time/UTC/1", lambda _channel, frame: emitted.put_nowait(frame))
    clock.start()
    try:
        # one second on is past the tick the ticker waits for, which it has not emitted yet
        first = orjson.loads(_data(clock.frame(time.time() + 1.0)))
        tick = orjson.loads(_data(await asyncio.wait_for(emitted.get(), 2)))
    finally:
        task = clock.stop()
    assert task is not None
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert tick["id"] == first["id"] + 1, (first, tick)
    assert datetime.fromisoformat(first["iso"]) < datetime.fromisoformat(tick["iso"])


def _data(frame: bytes) -> str:
    (line,) = [line for line in frame.decode().split("\n") if line.startswith("data: ")]
    return line.removeprefix("data: ")


@pytest.mark.any_backplane
async def test_ticker_stops_after_last_client(hub: HubServer) -> None:
    """The ticker keeps running while a client remains and stops within 2 s after the last."""
    first = await hub.subscribe("/event-stream?city=Asia/Calcutta&sec=5")
    second = await hub.subscribe("/channels/time/Asia/Calcutta/5/events")
    assert await gauge(hub, "hub_tickers") == 1
    await first.close()
    await eventually(lambda: _subscribers(hub, "time/Asia/Calcutta/5", 1), what="first client gone")
    assert await gauge(hub, "hub_tickers") == 1
    await second.close()
    took = await eventually(
        lambda: _gauge_is(hub, "hub_tickers", 0), timeout=2.0, what="ticker stopped"
    )
    assert took < 2.0
    assert "time/Asia/Calcutta/5" not in await channels_listed(hub)
    assert await gauge(hub, "hub_channels") == 0


async def _gauge_is(hub: HubServer, name: str, value: float) -> bool:
    return await gauge(hub, name) == value


async def _subscribers(hub: HubServer, channel: str, count: int) -> bool:
    listed = await channels_listed(hub)
    return channel in listed and listed[channel]["subscribers"] == count


@pytest.mark.any_backplane
async def test_ticker_restarts_for_a_new_client(hub: HubServer) -> None:
    """A stopped ticker is really gone: the next client gets one new ticker, one tick a second.

    A ticker left running after its last client would tick into the new channel too, and show
    up as two frames for the same second.
    """
    stream = await hub.subscribe("/event-stream?city=UTC&sec=1")
    await next_tick_after(stream, time.time(), "UTC")  # the first ticker is in its loop
    await stream.close()
    await eventually(lambda: _gauge_is(hub, "hub_tickers", 0), what="ticker stopped")
    again = await hub.subscribe("/event-stream?city=UTC&sec=1")
    joined = time.time()
    assert await gauge(hub, "hub_tickers") == 1
    first = await next_tick_after(again, joined, "UTC")
    second = tick_of(await again.next(timeout=3), "UTC")
    step = datetime.fromisoformat(second["iso"]) - datetime.fromisoformat(first["iso"])
    assert step == timedelta(seconds=1), (first, second)
    assert second["id"] == first["id"] + 1


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/event-stream?city=Mars/Olympus_Mons&sec=1", "unknown timezone"),
        ("/channels/time/asia/calcutta/1/events", "did you mean Asia/Calcutta"),  # names are exact
        ("/event-stream?city=&sec=1", "city is required"),
        ("/event-stream?sec=1", "city is required"),
        ("/channels/time/Mars/Olympus_Mons/5/events", "unknown timezone"),
        ("/events?channel=a&channel=time/Nowhere/5", "unknown timezone"),
    ],
    ids=("event-stream", "wrong-case", "empty-city", "no-city", "channel-route", "events-route"),
)
@pytest.mark.any_backplane
async def test_unknown_timezone_is_400(hub: HubServer, path: str, message: str) -> None:
    """A timezone zoneinfo does not know is a 400 with a JSON error."""
    async with hub.session.get(f"{hub.url}{path}") as response:
        assert response.status == 400
        assert message in (await response.json())["error"]
    assert await gauge(hub, "hub_tickers") == 0


@pytest.mark.parametrize(
    "path",
    [
        "/event-stream?city=UTC&sec=0",
        "/event-stream?city=UTC&sec=3601",
        "/event-stream?city=UTC&sec=-1",
        "/event-stream?city=UTC&sec=1.5",
        "/event-stream?city=UTC&sec=five",
        "/event-stream?city=UTC&sec=",
        "/channels/time/UTC/0/events",
        "/channels/time/UTC/3601/events",
        "/events?channel=time/UTC/99999",
        "/channels/time/UTC/05/events",
        "/channels/time/UTC/events",
    ],
    ids=(
        "zero",
        "3601",
        "negative",
        "fraction",
        "word",
        "empty",
        "channel-zero",
        "channel-3601",
        "events-huge",
        "leading-zero",
        "no-interval",
    ),
)
@pytest.mark.any_backplane
async def test_interval_out_of_range_is_400(hub: HubServer, path: str) -> None:
    """Intervals are whole seconds from 1 to 3600, written one way; anything else is a 400."""
    async with hub.session.get(f"{hub.url}{path}") as response:
        assert response.status == 400
        error = (await response.json())["error"]
        assert "interval" in error or "seconds" in error
    assert await gauge(hub, "hub_tickers") == 0


@pytest.mark.parametrize("sec", [1, 3600])
@pytest.mark.any_backplane
async def test_interval_bounds_are_accepted(hub: HubServer, sec: int) -> None:
    """1 s and 3600 s are both valid clocks."""
    stream = await hub.subscribe(f"/event-stream?city=UTC&sec={sec}")
    assert stream.response.status == 200
    assert await gauge(hub, "hub_tickers") == 1


async def test_clock_does_not_disturb_resume(hub: HubServer, backplane: str) -> None:
    """Ticks have no id and no history, so a clock+channel stream resumes the channel exactly."""
    stream = await hub.subscribe("/events?channel=time/UTC/1&channel=orders")
    receipt = await hub.publish("orders", "o1")
    published = time.time()
    while (message := await stream.next(timeout=3)).event != "message":
        tick_of(message, "UTC")
    assert message.id == receipt["id"]
    await next_tick_after(stream, published, "UTC")  # a tick after the event...
    assert stream.last_event_id == receipt["id"]  # ...leaves the client's last id alone
    await stream.close()

    missed = [await hub.publish("orders", f"o{i}") for i in (2, 3)]
    again = await hub.subscribe(
        "/events?channel=time/UTC/1&channel=orders", {"Last-Event-ID": stream.last_event_id}
    )
    got: list[Message] = []
    async with asyncio.timeout(5):
        while len(got) < 2:
            message = await again.next(timeout=3)
            if message.event == "UPDATE":
                tick_of(message, "UTC")
            else:
                got.append(message)
    assert [(m.event, m.data, m.id) for m in got] == [
        ("message", "o2", missed[0]["id"]),
        ("message", "o3", missed[1]["id"]),
    ]
    assert (await channels_listed(hub))["time/UTC/1"]["last_id"] is None


@pytest.mark.any_backplane
async def test_declared_clocks_are_listed(make_hub: MakeHub) -> None:
    """Clocks declared in config appear in /channels before anyone subscribes (no ticker yet)."""
    hub = await make_hub(
        clocks=[{"timezone": "Europe/Paris", "interval": 5}, {"timezone": "UTC", "interval": 60}]
    )
    listed = await channels_listed(hub)
    for name in ("time/Europe/Paris/5", "time/UTC/60"):
        assert listed[name] == {"name": name, "subscribers": 0, "clock": True, "last_id": None}
    assert await gauge(hub, "hub_tickers") == 0
    stream = await hub.subscribe("/event-stream?city=Europe/Paris&sec=5")
    assert (await channels_listed(hub))["time/Europe/Paris/5"]["subscribers"] == 1
    tick_of(await stream.next(timeout=6), "Europe/Paris")


@pytest.mark.any_backplane
async def test_clocks_on_demand_off(make_hub: MakeHub) -> None:
    """With ``clocks_on_demand = false`` only declared clocks can be subscribed."""
    hub = await make_hub(clocks_on_demand=False, clocks=[{"timezone": "UTC", "interval": 1}])
    declared = await hub.subscribe("/event-stream?city=UTC&sec=1")
    tick_of(await declared.next(timeout=3), "UTC")
    for path in (
        "/event-stream?city=UTC&sec=2",
        "/channels/time/Europe/Paris/1/events",
        "/events?channel=time/UTC/1&channel=time/UTC/3",
    ):
        async with hub.session.get(f"{hub.url}{path}") as response:
            assert 400 <= response.status < 500, path
            assert "clocks_on_demand" in (await response.json())["error"]
    assert await gauge(hub, "hub_tickers") == 1


@pytest.mark.any_backplane
async def test_every_listed_timezone_can_be_a_clock(hub: HubServer) -> None:
    """/timezones lists only zones whose clock channel name is valid: Etc/GMT+5 and its kin
    (a "+" is not allowed in channel names) are left out rather than offered and then refused."""
    async with hub.session.get(f"{hub.url}/timezones") as answer:
        zones = await answer.json()
    assert "Asia/Kolkata" in zones and "Etc/GMT-5" in zones
    assert not [zone for zone in zones if "+" in zone]
    for zone in ("Etc/GMT-14", "America/Argentina/Buenos_Aires", zones[-1]):
        stream = await hub.subscribe(f"/channels/time/{zone}/3600/events")
        assert (await stream.next()).event == "UPDATE"
        await stream.close()
    async with hub.session.get(f"{hub.url}/event-stream?city=Etc/GMT%2B5&sec=1") as refused:
        assert refused.status == 400
        assert "unknown timezone 'Etc/GMT+5'" in (await refused.json())["error"]
