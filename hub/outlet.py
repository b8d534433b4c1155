"""The socket side of a stream: its response, its connection, back-pressure on its head.

``Outlet`` is the one object that writes a stream's response: the core (``hub.hub``) sees it as
a ``hub.writer.Sink`` (its transport, whether it is chunk-framed, ``write_head``, ``abort``) and
never imports this module; the writer (``hub.writer``) writes live frames and heartbeats
straight to its transport, once per loop pass.

A replay waits for the client to read each slice, and a client that reads nothing for a
heartbeat interval meanwhile is cut off, so a resume's cost is bounded whatever history it asks
for. The kernel drops a connection whose data goes unacknowledged for ``tcp_user_timeout``
(``_abort_when_unacknowledged``), so a vanished peer is released within two heartbeats.

Built on aiohttp's public ``StreamResponse``, not on aiohttp-sse's ``EventSourceResponse``,
and with no private API of either (so no ``compat*.py`` module): the hub used only aiohttp-sse's
constructor (four headers, ``SSE_HEADERS`` here) and bypassed the rest (a ping task and a kept
socket per connection, a ``send`` that encodes once per subscriber), reaching into two private
attributes to do so (``_send_timeout``; aiohttp's ``_payload_writer``, now the writer that the
public ``prepare`` returns). Measured in one run, interleaved (10,000 idle streams, memory
backplane, RSS growth per stream, 3 rounds each): on ``EventSourceResponse`` 10,472-10,494 B,
on ``StreamResponse`` 10,405-10,421 B: aiohttp-sse as the base costs ~70 B per idle subscriber
and buys nothing the hub uses. CPU per delivery cannot differ: the writer never calls the
response. The project keeps aiohttp-sse for the naive baseline in ``bench/``.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Mapping

from aiohttp import HttpVersion11, web
from aiohttp.abc import AbstractStreamWriter

from hub import sse

__all__ = ["SSE_HEADERS", "Outlet"]

#: Below this many unsent bytes a write never waits (aiohttp drains past 64 KiB written, and
#: transports pause their protocol past a 64 KiB buffer).
_QUICK = 16 * 1024

#: The headers of every event stream: not cached, not buffered by nginx (and, as aiohttp-sse
#: sends them, in the same order).
SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "Connection": "keep-alive",
    "X-Accel-Buffering": "no",
}


class Outlet(web.StreamResponse):
    """One stream's response and, once prepared, its connection (a ``Sink``).

    Slots for what it adds: the response object is the outlet itself, not a second object
    beside it, and what an idle stream holds is paid per subscriber.
    """

    __slots__ = ("_ack_timeout", "_head_sent", "_request", "_stream_writer", "framed", "transport")

    def __init__(
        self, request: web.BaseRequest, headers: Mapping[str, str], ack_timeout: float | None
    ) -> None:
        super().__init__()
        self._request: web.BaseRequest | None = request  # until the headers are out
        self.headers.extend(headers)
        self.headers.update(SSE_HEADERS)
        self._ack_timeout = ack_timeout
        self.transport: asyncio.Transport | None = None
        # the writer's chunked encoding: HTTP/1.0 streams are written raw
        self.framed = True
        self._head_sent = False
        self._stream_writer: AbstractStreamWriter | None = None

    async def open(self) -> None:
        """Send the response headers (the core calls it once the history is settled)."""
        request, self._request = self._request, None
        if request is None:
            raise ConnectionResetError("the stream was opened already")
        await self.prepare(request)

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self._stream_writer is not None:
            return self._stream_writer
        if request.version < HttpVersion11:
            # an HTTP/1.0 stream ends by closing the connection (no chunked encoding): it must
            # not say "Connection: keep-alive"
            self.headers.pop("Connection", None)
            self.force_close()
        _abort_when_unacknowledged(request, self._ack_timeout)
        # The keep-alive timer only closes a connection between requests; while a stream
        # runs it is a timer held per subscriber for nothing (aiohttp's WebSocketResponse
        # cancels it the same way). aiohttp sets keep-alive again when the stream ends.
        request.protocol.keep_alive(False)
        writer = await super().prepare(request)
        # The head is on its way as bytes: the headers, and the strings multidict made for
        # each of them while they were written, are memory paid per subscriber from now on.
        self.headers.clear()
        self.transport = request.transport
        self.framed = bool(getattr(writer, "chunked", True))
        self._stream_writer = writer
        return writer

    async def write_head(self, data: bytes, max_pending: int, stall: float) -> bool:
        """Write part of a stream's head, then wait (up to ``stall`` s) for the client to read.

        Returns False for a slow reader (to be cut off); raises ``ConnectionResetError`` when
        the client has gone. The first write goes through aiohttp, which sends the response
        headers with it; the rest go straight to the transport, as live frames do.
        """
        transport = self.transport
        writer = self._stream_writer
        if transport is None or writer is None:
            raise ConnectionResetError("the stream was never prepared")
        first = not self._head_sent
        self._head_sent = True
        if first and len(data) < _QUICK:
            await self.write(data)  # small: aiohttp sends it with the headers, without waiting
            first, data = False, b""
        try:
            # A timer only when there is something to wait for: a cancelled one stays in the
            # event loop's heap until it is due, which is memory paid per new stream.
            if first:
                async with asyncio.timeout(stall):
                    await self.write(data)
            elif data:
                if transport.is_closing():
                    raise ConnectionResetError("the client has gone")
                transport.write(sse.http_chunk(data) if self.framed else data)
            if transport.get_write_buffer_size() > max_pending:
                return False
            if transport.get_write_buffer_size() >= _QUICK:
                async with asyncio.timeout(stall):
                    await writer.drain()
        except TimeoutError:
            return False
        return True

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


def _abort_when_unacknowledged(request: web.BaseRequest, seconds: float | None) -> None:
    """Have the kernel drop a connection whose data goes unacknowledged for ``seconds``.

    A vanished peer is then noticed at the next heartbeat instead of after ~15 minutes of
    retransmissions (Linux only; elsewhere a no-op).
    """
    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if option is None or seconds is None or sock is None:
        return
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, option, int(seconds * 1000))
