"""Helpers for the contract tests: raw bytes of a stream, /metrics, bounded waits, raw sockets.

Everything here talks to the hub through its HTTP interface only.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from tests.support.hubs import HubServer
from tests.support.sse_client import Message, Parser, Stream, open_stream

__all__ = [
    "RawSocket",
    "RecordingParser",
    "assert_next_is_marker",
    "eventually",
    "frame_of",
    "gauge",
    "hub_wide_count",
    "metric_types",
    "metrics",
    "metrics_text",
    "position",
    "publish_batch",
    "publish_many",
    "read_all_until",
    "subscribe_raw",
]

#: Ids are documented as ``<position>:<channel>``; positions are comparable across channels.
ID_RE = re.compile(r"(?P<position>[0-9]+):(?P<channel>.+)")


@dataclass
class RecordingParser(Parser):
    """The spec-conforming parser, also keeping every byte it was fed."""

    raw: bytearray = field(default_factory=bytearray)

    def feed(self, chunk: bytes) -> None:
        self.raw += chunk
        super().feed(chunk)


async def subscribe_raw(
    hub: HubServer, path: str, headers: dict[str, str] | None = None
) -> tuple[Stream, RecordingParser]:
    """Like ``hub.subscribe`` (returns once the retry hint is in), keeping the raw body bytes."""
    stream = await open_stream(hub.session, f"{hub.url}{path}", headers)
    hub.streams.append(stream)  # closed at teardown
    parser = RecordingParser()
    stream.parser = parser
    async with asyncio.timeout(5):
        while parser.retry is None:
            chunk = await stream.response.content.readany()
            assert chunk, f"the stream ended before its retry hint: {bytes(parser.raw)!r}"
            parser.feed(chunk)
    return stream, parser


def frame_of(raw: bytes | bytearray, event_id: str) -> bytes:
    """The complete frame (up to and including its blank line) that starts with ``id: <id>``."""
    start = bytes(raw).find(b"id: " + event_id.encode() + b"\n")
    assert start >= 0, f"no frame with id {event_id!r} in {bytes(raw)!r}"
    end = bytes(raw).find(b"\n\n", start)
    assert end >= 0, "the frame is not complete"
    return bytes(raw[start : end + 2])


def position(event_id: str) -> int:
    match = ID_RE.fullmatch(event_id)
    assert match, f"id {event_id!r} is not <position>:<channel>"
    return int(match["position"])


async def read_all_until(stream: Stream, last_id: str, timeout: float = 10.0) -> list[Message]:
    """Every message up to and including the one with id ``last_id``."""
    found: list[Message] = []
    async with asyncio.timeout(timeout):
        while not found or found[-1].id != last_id:
            found.append(await stream.next(timeout))
    return found


async def assert_next_is_marker(hub: HubServer, channel: str, *streams: Stream, **kw: Any) -> None:
    """Publish a marker on ``channel``; it must be the very next message of every stream.

    Per-channel order (and id order on multi-channel streams) means anything unexpected that was
    already on its way, a duplicate or a stray replay, would arrive before the marker: a check
    that nothing more came which needs no idle waiting.
    """
    receipt = await hub.publish(channel, "marker", **kw)
    for stream in streams:
        message = await stream.next()
        assert (message.data, message.id) == ("marker", receipt["id"]), f"unexpected {message}"


async def publish_batch(
    hub: HubServer, events: list[dict[str, Any]], status: int = 202, **kw: Any
) -> dict[str, Any]:
    async with hub.session.post(f"{hub.url}/publish", json=events, **kw) as response:
        answer = await response.json()
        assert response.status == status, answer
        return dict(answer)


async def publish_many(hub: HubServer, items: list[tuple[str, Any]]) -> list[str]:
    """Publish (channel, data) pairs one after the other; their ids, in order."""
    return [(await hub.publish(channel, data))["id"] for channel, data in items]


async def metrics_text(hub: HubServer) -> str:
    async with hub.session.get(f"{hub.url}/metrics") as response:
        assert response.status == 200
        return await response.text()


async def metrics(hub: HubServer) -> dict[str, float]:
    """The samples of /metrics, by name (with labels, as written)."""
    values: dict[str, float] = {}
    for line in (await metrics_text(hub)).splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


async def metric_types(hub: HubServer) -> dict[str, str]:
    """The ``# TYPE`` of every metric family in /metrics."""
    types: dict[str, str] = {}
    for line in (await metrics_text(hub)).splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            types[name] = kind
    return types


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float = 2.0, what: str = "condition"
) -> float:
    """Poll ``check`` until it holds; fail after ``timeout`` seconds. Returns the time it took."""
    started = time.monotonic()
    deadline = started + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def hub_wide_count(session: Any, url: str, channel: str, count: int) -> None:
    """Wait until the hub process at ``url`` counts ``count`` subscribers of ``channel`` on
    every process (its /channels adds the others' counts, shared every 2 s, to its own): what
    presence and webhooks judge by, so a test waits for it rather than for a fixed time."""

    async def counted() -> bool:
        async with session.get(f"{url}/channels") as response:
            found = {c["name"]: c["subscribers"] for c in await response.json()}
        return bool(found.get(channel) == count)

    await eventually(counted, timeout=15, what=f"{url} counting {count} on {channel}")


async def gauge(hub: HubServer, name: str) -> float:
    return (await metrics(hub))[name]


class RawSocket:
    """An HTTP/1.1 client on a plain socket, for clients that misbehave (stop reading, vanish)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    @classmethod
    async def get(cls, hub: HubServer, path: str, receive_buffer: int | None = None) -> RawSocket:
        assert hub.server.port is not None
        return await cls.connect(hub.server.port, path, receive_buffer)

    @classmethod
    async def connect(cls, port: int, path: str, receive_buffer: int | None = None) -> RawSocket:
        """``GET path`` on 127.0.0.1:port; a small ``receive_buffer`` keeps the TCP window small."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:  # before connect, so the window is small from the start
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        try:
            await loop.sock_connect(sock, ("127.0.0.1", port))
            request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
            await loop.sock_sendall(sock, request.encode() + b"\r\n")
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    async def read_until(self, needle: bytes, timeout: float = 5.0) -> bytes:
        loop = asyncio.get_running_loop()
        data = b""
        async with asyncio.timeout(timeout):
            while needle not in data:
                chunk = await loop.sock_recv(self.sock, 65536)
                assert chunk, f"connection closed before {needle!r}: {data!r}"
                data += chunk
        return data

    async def drain_to_end(self, timeout: float = 5.0) -> int:
        """Read until the server closes or resets the connection; returns the bytes read."""
        loop = asyncio.get_running_loop()
        total = 0
        async with asyncio.timeout(timeout):
            while True:
                try:
                    chunk = await loop.sock_recv(self.sock, 1 << 20)
                except ConnectionResetError:
                    return total
                if not chunk:
                    return total
                total += len(chunk)

    def close(self) -> None:
        self.sock.close()
