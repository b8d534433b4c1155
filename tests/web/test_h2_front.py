"""The HTTPS + HTTP/2 front (``scripts/h2-front``, deploy/nginx-h2.conf) in front of a real hub.

What bites event streams behind a proxy, checked through the front with real processes:
resume with Last-Event-ID, heartbeats, the slow-reader cut-off (delayed by the front's buffers,
not lost), X-Accel-Buffering honoured even where buffering is on, HTTP/2 to clients, and that
a request the front forwards is not "loopback" for publishing.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.support.front import Front, client_tls, run_front
from tests.support.processes import ROOT, HubProcess, run_to_end
from tests.support.sse_client import Stream, open_stream

pytestmark = pytest.mark.any_backplane

SETTINGS = {
    "HUB_HOST": "127.0.0.1",
    "HUB_PORT": "0",
    "HUB_CONFIG": "/dev/null",
    "HUB_HEARTBEAT": "0.5",
    "HUB_MAX_PENDING_BYTES": "8192",
}


@pytest.fixture
async def hub_process() -> AsyncIterator[HubProcess]:
    process = await HubProcess.spawn(env=SETTINGS)
    try:
        yield await process.started()
    finally:
        await process.stop()


@pytest.fixture
async def front(hub_process: HubProcess) -> AsyncIterator[Front]:
    async with run_front(hub_process.url) as started:
        yield started


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(ssl=client_tls())
    async with aiohttp.ClientSession(connector=connector) as client:
        yield client


async def publish(session: aiohttp.ClientSession, hub: HubProcess, channel: str, data: str) -> str:
    """Straight to the hub (loopback publishes without a token)."""
    url = f"{hub.url}/channels/{channel}/events"
    async with session.post(url, json={"data": data}) as response:
        assert response.status == 202, await response.text()
        return str((await response.json())["id"])


async def subscribe(session: aiohttp.ClientSession, url: str, **headers: str) -> Stream:
    stream = await open_stream(session, url, headers)
    while stream.parser.retry is None:  # the retry hint is written once the stream is live
        chunk = await stream.response.content.readany()
        assert chunk, "the stream ended before its retry hint"
        stream.parser.feed(chunk)
    return stream


async def test_resume_with_last_event_id_through_the_front(
    front: Front, hub_process: HubProcess, session: aiohttp.ClientSession
) -> None:
    """A resume through the front replays what came after the id, then goes live."""
    ids = [await publish(session, hub_process, "news", f"e{i}") for i in range(3)]
    stream = await subscribe(
        session, f"{front.url}/channels/news/events", **{"Last-Event-ID": ids[0]}
    )
    assert [(m.data, m.id) for m in await stream.take(2)] == [("e1", ids[1]), ("e2", ids[2])]
    live = await publish(session, hub_process, "news", "e3")
    assert (await stream.next()).id == live
    await stream.close()


async def test_heartbeats_arrive_through_the_front(
    front: Front, session: aiohttp.ClientSession
) -> None:
    """The hub's comment lines are not held by the front: two arrive on an idle stream."""
    stream = await open_stream(session, f"{front.url}/channels/quiet/events")
    assert stream.response.headers["Content-Type"].startswith("text/event-stream")
    seen = b""
    async with asyncio.timeout(10):
        while seen.count(b"\n:") < 2:
            chunk = await stream.response.content.readany()
            assert chunk, "the stream ended"
            seen += chunk
    await stream.close()


async def test_slow_reader_is_still_cut_off_behind_the_front(
    front: Front, hub_process: HubProcess, session: aiohttp.ClientSession
) -> None:
    """A client that stops reading fills the front's buffers, then the hub's: the hub cuts it
    off (later than without the front, by what the front and the sockets hold), and the front
    ends the client's stream. Publishing is bounded; the cut-off must happen within it."""
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)  # no autotuned megabytes here
    raw.setblocking(False)
    await asyncio.get_running_loop().sock_connect(raw, ("127.0.0.1", front.port))
    reader, writer = await asyncio.open_connection(
        sock=raw, ssl=client_tls(), server_hostname="localhost", limit=1024
    )
    sock = writer.get_extra_info("socket")
    writer.write(b"GET /channels/flood/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
    await writer.drain()
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    transport = writer.transport
    transport.pause_reading()  # and read no more: the TCP window closes
    assert sock is not None
    # The front's side of both sockets is autotuned by the kernel (tcp_wmem/tcp_rmem: several
    # MB each on some machines), so the bound is generous; batches keep it quick.
    batch = [{"channel": "flood", "data": "x" * 4000}] * 16
    dropped = 0.0
    for _ in range(1000):  # 64 MB at most
        async with session.post(f"{hub_process.url}/publish", json=batch) as response:
            assert response.status == 202, await response.text()
        dropped = await _metric(session, hub_process, "hub_subscribers_dropped_total")
        if dropped:
            break
    assert dropped == 1, "the hub never cut the slow reader off"
    writer.close()
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        await writer.wait_closed()


async def test_x_accel_buffering_is_honoured(
    hub_process: HubProcess, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """With buffering turned ON in the front, the hub's ``X-Accel-Buffering: no`` still makes
    the front pass each small event at once (a buffering front would hold it until 4 KiB or
    the end of the stream)."""
    template = (ROOT / "deploy" / "nginx-h2.conf").read_text()
    buffered = template.replace("proxy_buffering off;", "proxy_buffering on;")
    assert buffered != template
    config = tmp_path / "buffered.conf"
    config.write_text(buffered)
    async with run_front(hub_process.url, config) as front:
        stream = await subscribe(session, f"{front.url}/channels/tiny/events")
        sent = await publish(session, hub_process, "tiny", "small")
        assert (await stream.next()).id == sent
        await stream.close()


async def test_http2_and_stream_headers(front: Front) -> None:
    """curl over HTTP/2: the stream is HTTP/2, text/event-stream, uncompressed, uncached."""
    code, out, err = await run_to_end(
        "curl", "-sk", "--http2", "-N", "--max-time", "2", "-D", "-", "-H",
        "Accept-Encoding: gzip, br", f"{front.url}/channels/h2/events",
        env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert code == 28, err  # ended by --max-time: the stream stays open
    head = out.split("\r\n\r\n", 1)[0].lower()
    assert head.startswith("http/2 200")
    assert "content-type: text/event-stream" in head
    assert "cache-control: no-cache" in head
    assert "content-encoding" not in head
    assert "retry:" in out


async def test_forwarded_requests_are_not_loopback(
    front: Front, session: aiohttp.ClientSession
) -> None:
    """Without publish_tokens only loopback clients may publish; behind a front on the same
    machine every client comes from 127.0.0.1, so the forwarded header decides."""
    async with session.post(f"{front.url}/channels/x/events", json={"data": 1}) as response:
        assert response.status == 403
        assert "loopback clients only" in (await response.json())["error"]


async def _metric(session: aiohttp.ClientSession, hub: HubProcess, name: str) -> float:
    async with session.get(f"{hub.url}/metrics") as response:
        text = await response.text()
    found = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
    assert found, f"{name} is not in /metrics"
    return float(found.group(1))
