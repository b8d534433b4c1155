"""Latest-wins channels (``conflate``) through HTTP, on every backplane: a subscriber that stops
reading is not cut off and, once it reads again, gets the newest event of each conflated channel
and not the ones in between; a resume gets the newest event after its id, over one history page
or several; ordinary channels beside them keep every event."""

from __future__ import annotations

import asyncio
import re

import orjson

from tests.conftest import MakeHub
from tests.support.helpers import RawSocket, metrics, publish_batch
from tests.support.hubs import HubServer

#: an event's number and channel, as the frames carry them (``{"n":12,...}`` on ``prices/a``)
NUMBERED = re.compile(rb"id: \d+:(?P<channel>[^\n]+)\n(?:event: [^\n]+\n)?data: \{\"n\":(?P<n>\d+)")
PAD = "p" * 10_000


async def _numbers_until(
    stalled: RawSocket, last: bytes, times: int = 1, timeout: float = 10
) -> list[tuple[str, int]]:
    """Read the raw stream until ``last`` was in it ``times`` times; the (channel, n) of every
    event read."""
    loop = asyncio.get_running_loop()
    data = b""
    async with asyncio.timeout(timeout):
        while data.count(last) < times:
            chunk = await loop.sock_recv(stalled.sock, 65536)
            assert chunk, f"connection closed before {last!r}"
            data += chunk
    return [(m["channel"].decode(), int(m["n"])) for m in NUMBERED.finditer(data)]


async def _publish_numbered(hub: HubServer, channels: list[str], count: int) -> None:
    for start in range(0, count, 50):
        batch = [
            {"channel": channel, "data": {"n": n, "pad": PAD}}
            for n in range(start, min(start + 50, count))
            for channel in channels
        ]
        await publish_batch(hub, batch)


async def test_a_stalled_subscriber_gets_the_newest_only(make_hub: MakeHub, backplane: str) -> None:
    """A client with a small receive buffer that reads nothing while 6 MB are published on
    two conflated channels is kept; when it reads, it gets some of the first events, then the
    newest of each channel, and nothing between. A reader that reads gets the newest too (it
    may skip some of a burst published at once: more than it has read, and latest-wins)."""
    hub = await make_hub(conflate=["prices/*"], max_pending_bytes=262_144, heartbeat=30)
    path = "/events?channel=prices/a&channel=prices/b"
    stalled = await RawSocket.get(hub, path, receive_buffer=4096)
    try:
        await stalled.read_until(b"retry: 3000")
        reader = await hub.subscribe(path)
        await _publish_numbered(hub, ["prices/a", "prices/b"], 300)
        newest: dict[str, int] = {}
        while newest != {"prices/a": 299, "prices/b": 299}:
            message = await reader.next(timeout=10)
            channel = message.id.split(":", 1)[1]
            n = orjson.loads(message.data)["n"]
            assert n > newest.get(channel, -1), "in order, each once"
            newest[channel] = n
        await asyncio.sleep(0.3)
        values = await metrics(hub)
        assert values["hub_subscribers_dropped_total"] == 0
        assert values["hub_subscribers"] == 2
        got = await _numbers_until(stalled, b'{"n":299,', times=2)  # of each channel
        for channel in ("prices/a", "prices/b"):
            numbers = [n for c, n in got if c == channel]
            assert numbers == sorted(set(numbers)), "in order, each once"
            assert numbers[-1] == 299, "the newest comes last"
            assert len(numbers) < 60, f"{len(numbers)} events: not conflated"
        # live again: the next event comes at once
        await hub.publish("prices/a", {"n": 300})
        assert (await _numbers_until(stalled, b'"n":300'))[-1] == ("prices/a", 300)
    finally:
        stalled.close()


async def test_resume_gets_the_newest_after_the_id(make_hub: MakeHub, backplane: str) -> None:
    """Last-Event-ID or from=start on a conflated channel: the newest event after it, then live;
    also when the history after the id spans several replay pages (2 MB of it)."""
    hub = await make_hub(conflate=["prices/*"], max_body_bytes=4 << 20)
    first = await hub.publish("prices/r", {"n": 0})
    for n in range(1, 10):
        await hub.publish("prices/r", {"n": n})
    resumed = await hub.subscribe("/channels/prices/r/events", {"Last-Event-ID": first["id"]})
    assert (await resumed.next()).data == '{"n":9}'
    start = await hub.subscribe("/channels/prices/r/events?from=start")
    assert (await start.next()).data == '{"n":9}'
    await hub.publish("prices/r", {"n": 10})
    assert (await resumed.next()).data == (await start.next()).data == '{"n":10}'
    big = "b" * 50_000
    for n in range(11, 51, 10):  # 40 x 50 kB: several pages of 256 kB
        await publish_batch(hub, [{"channel": "prices/r", "data": {"n": k, "b": big}}
                                  for k in range(n, n + 10)])  # fmt: skip
    await hub.publish("prices/r", {"n": 51})
    paged = await hub.subscribe("/channels/prices/r/events", {"Last-Event-ID": first["id"]})
    assert (await paged.next()).data == '{"n":51}'
    assert await paged.quiet(0.3) == []


async def test_ordinary_channels_beside_keep_every_event(make_hub: MakeHub, backplane: str) -> None:
    """A stream of a conflated and an ordinary channel resumed from the start: every event of
    the ordinary one and the newest of the conflated one, in id order."""
    hub = await make_hub(conflate=["prices/*"])
    await publish_batch(hub, [{"channel": "prices/m", "data": 1}, {"channel": "news", "data": 2},
                              {"channel": "prices/m", "data": 3}, {"channel": "news", "data": 4},
                              {"channel": "prices/m", "data": 5}])  # fmt: skip
    stream = await hub.subscribe("/events?channel=prices/m&channel=news&from=start")
    assert [m.data for m in await stream.take(3)] == ["2", "4", "5"]
    assert await stream.quiet(0.3) == []
