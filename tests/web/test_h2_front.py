"""The HTTPS + HTTP/2 front (``scripts/h2-front``, deploy/nginx-h2.conf) in front of a real hub.

What bites event streams behind a proxy, checked through the front with real processes:
resume with Last-Event-ID, heartbeats, the slow-reader cut-off (delayed by the front's buffers,
not lost), X-Accel-Buffering honoured even where buffering is on, HTTP/2 to clients, that
a request the front forwards is not "loopback" for publishing, and what the front is for:
Chromium opens twenty EventSources on one origin through it, and six straight on the hub.
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
from playwright.async_api import Browser, Page

from tests.conftest import MakeHubProcess
from tests.support.browser import launched_browser
from tests.support.front import Front, client_tls, run_front
from tests.support.processes import ROOT, HubProcess, run_to_end
from tests.support.sse_client import Stream, open_stream

pytestmark = pytest.mark.any_backplane

WAIT_MS = 10000  # the longest any single page condition may take


@pytest.fixture
async def hub_process(make_hub_process: MakeHubProcess) -> HubProcess:
    return await make_hub_process(heartbeat=0.5, max_pending_bytes=8192)


@pytest.fixture
async def front(hub_process: HubProcess) -> AsyncIterator[Front]:
    async with run_front(hub_process.url) as started:
        yield started


@pytest.fixture
async def chromium() -> AsyncIterator[Browser]:
    """A Chromium of this test's own: the session's (``browser``) lives in the browser tests'
    event loop, and this test's fixtures (the hub, the front) in the test's."""
    async with launched_browser() as launched:
        yield launched


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


# -- what the front is for: a browser's six connections per origin ----------------------------

#: Opens one EventSource per channel and counts, per stream, "open" and messages received.
OPEN_STREAMS = """(count) => {
  window.streams = [];
  for (let i = 0; i < count; i++) {
    const entry = {open: false, received: 0};
    const source = new EventSource(`/channels/many-${i}/events`);
    source.onopen = () => { entry.open = true; };
    source.onmessage = () => { entry.received += 1; };
    entry.source = source;
    window.streams.push(entry);
  }
}"""
OPENED = "() => window.streams.filter((s) => s.open).length"
RECEIVED = "() => window.streams.filter((s) => s.received > 0).length"
PROTOCOL = "() => performance.getEntriesByType('navigation')[0].nextHopProtocol"
STREAMS = 20


async def open_twenty(browser: Browser, origin: str) -> Page:
    # the front's certificate is self-signed
    page = await (await browser.new_context(ignore_https_errors=True)).new_page()
    page.set_default_timeout(WAIT_MS)
    await page.goto(f"{origin}/healthz")  # a same-origin document that opens no stream itself
    await page.evaluate(OPEN_STREAMS, STREAMS)
    return page


async def publish_to_all(session: aiohttp.ClientSession, hub: HubProcess) -> None:
    for i in range(STREAMS):
        await publish(session, hub, f"many-{i}", str(i))


@pytest.mark.browser
async def test_twenty_event_sources_over_http2_but_six_over_http1(
    chromium: Browser, front: Front, hub_process: HubProcess, session: aiohttp.ClientSession
) -> None:
    """Chromium (Debian's) through the front: all 20 open and receive, over h2. Straight on the
    hub, over HTTP/1.1, only 6 open: the browser's limit of connections per origin."""
    page = await open_twenty(chromium, front.url)
    assert await page.evaluate(PROTOCOL) == "h2"
    await page.wait_for_function(f"() => ({OPENED})() === {STREAMS}")
    await publish_to_all(session, hub_process)
    await page.wait_for_function(f"() => ({RECEIVED})() === {STREAMS}")
    assert await _metric(session, hub_process, "hub_subscribers") == STREAMS
    await page.context.close()

    page = await open_twenty(chromium, hub_process.url)
    assert await page.evaluate(PROTOCOL) == "http/1.1"
    await page.wait_for_function(f"() => ({OPENED})() === 6")
    await publish_to_all(session, hub_process)
    await page.wait_for_function(f"() => ({RECEIVED})() === 6")
    await asyncio.sleep(1)  # and no seventh opens: the others wait for a free connection
    assert await page.evaluate(OPENED) == 6
    assert await page.evaluate(RECEIVED) == 6
    assert await _metric(session, hub_process, "hub_subscribers") == 6
    await page.context.close()
