"""Capacity and misbehaving clients: refusals that keep EventSource retrying, slow and vanished
subscribers.

Over capacity a subscriber gets ``200`` + a jittered ``retry:`` + a clean end, never a 4xx/5xx
(an EventSource gives up for good on those). A subscriber that stops reading is cut off once its
unsent output passes ``max_pending_bytes``, without slowing anyone else. A client that trickles
its request or its body is cut off by ``idle_timeout`` / ``body_timeout``; a quiet stream is
never idle.
"""

from __future__ import annotations

import asyncio
import socket
import time

import aiohttp
import pytest

from tests.conftest import HubServer, MakeHub
from tests.support.helpers import RawSocket, eventually, gauge, metrics, publish_batch
from tests.support.raw_http import closed, json_error, one_answer, port_of
from tests.support.sse_client import Stream, open_stream


async def refused(hub: HubServer, path: str) -> Stream:
    """Open a stream that the hub turns away; check it is a polite 200 that ends."""
    stream = await open_stream(hub.session, f"{hub.url}{path}")
    hub.streams.append(stream)
    headers = stream.response.headers
    assert stream.response.status == 200
    assert headers["Content-Type"].split(";")[0].strip() == "text/event-stream"
    assert headers["Cache-Control"] == "no-cache"
    assert await stream.until_end() == []
    assert stream.ended
    assert stream.parser.retry is not None, "a refusal tells the client when to retry"
    return stream


@pytest.mark.any_backplane
async def test_max_subscribers(make_hub: MakeHub) -> None:
    """Past ``max_subscribers`` a stream gets 200, a retry hint and a clean end."""
    hub = await make_hub(max_subscribers=2, retry=1000)
    first = await hub.subscribe("/channels/a/events")
    await hub.subscribe("/events?channel=b&channel=c")
    extra = await refused(hub, "/channels/a/events")
    assert extra.parser.retry is not None and extra.parser.retry >= 1000
    assert await gauge(hub, "hub_subscribers") == 2
    assert (await metrics(hub))["hub_subscribers_refused_total"] == 1
    # the ones inside still work, and a place that frees up is taken again
    receipt = await hub.publish("a", "still here")
    assert (await first.next()).id == receipt["id"]
    await first.close()
    await eventually(lambda: _gauge_is(hub, "hub_subscribers", 1), what="place freed")
    again = await hub.subscribe("/channels/a/events")
    assert again.response.status == 200


@pytest.mark.any_backplane
async def test_retry_is_jittered(make_hub: MakeHub) -> None:
    """Refused clients are told different delays, so they do not all come back at once."""
    hub = await make_hub(max_subscribers=1, retry=1000)
    await hub.subscribe("/channels/a/events")
    delays = [(await refused(hub, "/channels/a/events")).parser.retry for _ in range(6)]
    assert len(set(delays)) > 1, delays


@pytest.mark.any_backplane
async def test_max_channels(make_hub: MakeHub) -> None:
    """Past ``max_channels`` a stream on a new channel is turned away politely, never 4xx."""
    hub = await make_hub(max_channels=2)
    await hub.subscribe("/channels/a/events")
    await hub.subscribe("/channels/time/UTC/60/events")
    await refused(hub, "/channels/c/events")
    await refused(hub, "/events?channel=a&channel=c")
    await refused(hub, "/event-stream?city=Asia/Tokyo&sec=1")
    assert await gauge(hub, "hub_channels") == 2
    assert await gauge(hub, "hub_tickers") == 1
    # existing channels still take subscribers
    more = await hub.subscribe("/events?channel=a&channel=time/UTC/60")
    assert more.response.status == 200


async def _gauge_is(hub: HubServer, name: str, value: float) -> bool:
    return await gauge(hub, name) == value


async def test_slow_subscriber_is_dropped(make_hub: MakeHub, backplane: str) -> None:
    """A subscriber that stops reading is closed past ``max_pending_bytes``; others get it all.

    The stalled client is a raw socket with a small receive buffer that never reads. Events are
    published until the hub drops it (bounded); the reading subscriber must receive every one of
    them, in order, and the drop is counted in /metrics.
    """
    hub = await make_hub(max_pending_bytes=1024)
    stalled = await RawSocket.get(hub, "/channels/firehose/events", receive_buffer=4096)
    try:
        await stalled.read_until(b"retry: 3000")
        reader = await hub.subscribe("/channels/firehose/events")
        assert await gauge(hub, "hub_subscribers") == 2
        payload = "x" * 30000
        sent: list[str] = []
        received: list[str] = []

        async def read() -> None:
            while True:
                received.append((await reader.next(timeout=10)).id)

        reading = asyncio.create_task(read())
        try:
            for _ in range(200):  # at most 200 x 10 x 30 kB = 60 MB
                answer = await publish_batch(hub, [{"channel": "firehose", "data": payload}] * 10)
                sent += [r["id"] for r in answer["events"]]
                if (await metrics(hub))["hub_subscribers_dropped_total"] >= 1:
                    break
            else:
                raise AssertionError("the stalled subscriber was never dropped")

            async def caught_up() -> bool:
                return len(received) >= len(sent)

            await eventually(caught_up, timeout=10, what="reader caught up")
        finally:
            reading.cancel()
        assert received == sent
        values = await metrics(hub)
        assert values["hub_subscribers_dropped_total"] == 1
        assert values["hub_subscribers"] == 1
        # the stalled client finds its connection closed once it looks
        await stalled.drain_to_end(timeout=10)
        # and the reader keeps receiving
        receipt = await hub.publish("firehose", "after the drop")
        assert (await reader.next()).id == receipt["id"]
    finally:
        stalled.close()


@pytest.mark.any_backplane
async def test_disconnect_is_noticed_promptly(hub: HubServer) -> None:
    """A client that goes away stops counting as a subscriber at once, even on a quiet stream."""
    streams = [await hub.subscribe("/channels/quiet/events") for _ in range(3)]
    raw = await RawSocket.get(hub, "/events?channel=quiet&channel=other")
    await raw.read_until(b"retry:")
    assert await gauge(hub, "hub_subscribers") == 4
    for stream in streams:
        await stream.close()
    raw.close()
    took = await eventually(
        lambda: _gauge_is(hub, "hub_subscribers", 0), timeout=2.0, what="disconnects noticed"
    )
    assert took < 2.0
    assert await gauge(hub, "hub_channels") == 0
    receipt = await hub.publish("quiet", "nobody listens")
    assert receipt["subscribers"] == 0


async def test_burst_of_subscribers_is_served(make_hub: MakeHub, backplane: str) -> None:
    """250 subscribers arriving at once, each on a channel of its own, all get a live stream:
    none is turned away as if the backplane were down (with Redis, they wait for a pooled
    connection instead of failing), and a publish to the last channel reaches its subscriber.
    They all come from 127.0.0.1, so the per-address rate limit (tests/limits/test_rate_limits.py)
    is turned off: it is the backplane's burst that is under test here."""
    hub = await make_hub(subscribe_rate=0)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        streams = await asyncio.gather(
            *(open_stream(session, f"{hub.url}/channels/burst-{n}/events") for n in range(250))
        )
        for stream in streams:
            while stream.parser.retry is None:
                chunk = await stream.response.content.readany()
                assert chunk, "a stream ended before its retry hint"
                stream.parser.feed(chunk)
        assert {stream.parser.retry for stream in streams} == {3000}, "some were told to retry"
        async with session.get(f"{hub.url}/readyz") as ready:
            assert ready.status == 200
        receipt = await hub.publish("burst-249", "last")
        assert (await streams[-1].next()).id == receipt["id"]
        for stream in streams:
            await stream.close()


# -- slow clients: limits meant for idle connections, and what they must not cut ---------


async def _trickle(port: int, data: bytes, every: float) -> float | None:
    """Send ``data`` a byte at a time; the seconds after which the hub closed, or None."""
    sock = socket.socket()
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    try:
        await loop.sock_connect(sock, ("127.0.0.1", port))
        for byte in data:
            try:
                await loop.sock_sendall(sock, bytes([byte]))
                async with asyncio.timeout(every):
                    if await loop.sock_recv(sock, 1024) == b"":
                        return time.monotonic() - started
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - started
        return None
    finally:
        sock.close()


@pytest.mark.any_backplane
async def test_slowloris_is_cut_off(make_hub: MakeHub) -> None:
    """Request headers sent a byte every 0.1 s hold the connection for idle_timeout at most."""
    hub = await make_hub(idle_timeout=1)
    headers = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 60 + b"\r\n\r\n"
    took = await _trickle(port_of(hub), headers, every=0.1)
    assert took is not None, "the slow client kept its connection for the whole request"
    assert took < 1 + 1.5, took


@pytest.mark.any_backplane
async def test_idle_keepalive_is_closed_but_streams_are_not(make_hub: MakeHub) -> None:
    """idle_timeout closes a keep-alive connection with no request; a quiet event stream is not
    idle (it is one long answer) and lives on past it."""
    hub = await make_hub(idle_timeout=0.5, heartbeat=60)
    stream = await hub.subscribe("/channels/quiet/events")
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(hub))
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        async with asyncio.timeout(5):
            await reader.readuntil(b"\r\n\r\n")
            while await reader.read(65536):  # the rest of the answer, then the close
                pass
    finally:
        await closed(writer)
    await asyncio.sleep(1.0)
    receipt = await hub.publish("quiet", "still here")
    assert (await stream.next()).id == receipt["id"]


@pytest.mark.any_backplane
async def test_slow_body_is_408(make_hub: MakeHub) -> None:
    """A publish body that does not arrive within body_timeout: 408 JSON naming the setting."""
    hub = await make_hub(body_timeout=0.3)
    request = (
        b"POST /channels/c/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"data": '
    )
    error = json_error(await one_answer(port_of(hub), request), 408)
    assert "body_timeout" in error
