"""What an idle stream gives up once its head is written, and what it must keep doing anyway.

``hub.outlet.Outlet`` clears the response headers once aiohttp has serialized them and cancels
aiohttp's keep-alive timer while the stream runs: both are memory paid per idle subscriber. These
tests fail if an aiohttp release serializes the headers later (the head would go out without
them) or stops restoring keep-alive when a response ends (the connection after a stream would
no longer be reused, or no longer closed when idle).
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from tests.conftest import HubServer, MakeHub
from tests.support.helpers import RawSocket


def _port(hub: HubServer) -> int:
    assert hub.server.port is not None
    return hub.server.port


@pytest.mark.any_backplane
async def test_stream_head_has_every_header(make_hub: MakeHub) -> None:
    """The head of a stream, byte for byte in its header lines, CORS included."""
    hub = await make_hub(cors_origins=["https://page.example"])
    raw = RawSocket(await _connect(hub, "/channels/head/events", "Origin: https://page.example"))
    try:
        data = await raw.read_until(b"\r\n\r\n")
        head = data.partition(b"\r\n\r\n")[0].decode().split("\r\n")
        assert head[0] == "HTTP/1.1 200 OK"
        fields = {}
        for line in head[1:]:
            name, _, value = line.partition(": ")
            fields[name.lower()] = value
        fields.pop("date", None)
        fields.pop("server", None)
        assert fields == {
            "access-control-allow-origin": "https://page.example",
            "access-control-allow-credentials": "true",
            "vary": "Origin",
            "content-type": "text/event-stream",
            "cache-control": "no-cache",
            "connection": "keep-alive",
            "x-accel-buffering": "no",
            "transfer-encoding": "chunked",
        }
        receipt = await hub.publish("head", "after the head")
        assert f"id: {receipt['id']}".encode() in await raw.read_until(b"after the head")
    finally:
        raw.close()


@pytest.mark.any_backplane
async def test_connection_after_a_stream_is_kept_alive_then_closed_when_idle(
    make_hub: MakeHub,
) -> None:
    """A stream the hub ends (its channel deleted) ends its chunked answer; the connection then
    serves the next request, and idle_timeout closes it once it sits idle."""
    hub = await make_hub(idle_timeout=0.5, heartbeat=60)
    raw = RawSocket(await _connect(hub, "/channels/gone/events"))
    try:
        await raw.read_until(b"\r\n\r\n")
        await asyncio.sleep(1.0)  # past idle_timeout: the stream is one long answer, not idle
        async with hub.session.delete(f"{hub.url}/channels/gone") as answer:
            assert answer.status == 200, await answer.text()
        ended = await raw.read_until(b"\r\n0\r\n\r\n")
        assert b"event: close" in ended
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(raw.sock, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert (await raw.read_until(b"\r\n")).startswith(b"HTTP/1.1 200 ")
        await raw.drain_to_end(timeout=10)  # returns once the hub closes the idle connection
    finally:
        raw.close()


async def _connect(hub: HubServer, path: str, *headers: str) -> socket.socket:
    """``GET path`` on a plain socket, with extra header lines."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        await loop.sock_connect(sock, ("127.0.0.1", _port(hub)))
        lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "Accept: text/event-stream", *headers]
        await loop.sock_sendall(sock, ("\r\n".join(lines) + "\r\n\r\n").encode())
    except BaseException:
        sock.close()
        raise
    return sock
