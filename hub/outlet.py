"""The socket side of every stream: frames to bytes on the wire, back-pressure, heartbeats.

This is the one module that writes to a connection. The hub core hands each frame to
``Writer.fan_out``, which queues it on the subscriptions (``pending``), and asks
``Writer.schedule`` for a flush; the ``Writer`` then writes
each dirty subscription's pending frames with a single ``transport.write`` once per event-loop
pass, HTTP/1.1 chunk-framed (once per shared bytes object when subscribers share a frame). So a
burst of N events costs each subscriber one write, not N, and no subscriber has a task, queue or
timer of its own: one heartbeat task serves every stream.

The one back-pressure rule, for live frames and replays alike: a stream whose unsent output
passes ``max_pending_bytes`` is a slow reader and is cut off (aborted: a graceful close would
wait on the full buffer). It resumes with ``Last-Event-ID`` when it reads again. A replay also
waits for the client to read each slice, and a client that reads nothing for a heartbeat
interval meanwhile is cut off too, so a resume's cost is bounded whatever history it asks for.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from aiohttp import HttpVersion11, web
from aiohttp.abc import AbstractStreamWriter
from aiohttp_sse import EventSourceResponse

from hub import sse
from hub.metrics import Metrics
from hub.subscription import State

if TYPE_CHECKING:
    from hub.subscription import Subscription

__all__ = ["WRITTEN", "Outlet", "Writer"]


class _Written(tuple):  # type: ignore[type-arg]
    """An empty pending list (falsy, as ``()``) that also says "written since the last beat"."""

    __slots__ = ()


#: What a flush leaves in a subscription's ``pending``: the heartbeat skips streams that carried
#: frames since the previous beat (a stream is never quiet for two heartbeat intervals), which
#: at one event per stream per interval halves the writes, at no memory per stream.
WRITTEN: tuple[()] = _Written()

#: Below this many unsent bytes a write never waits (aiohttp drains past 64 KiB written, and
#: transports pause their protocol past a 64 KiB buffer).
_QUICK = 16 * 1024


class Outlet(EventSourceResponse):
    """One stream's response and, once prepared, its connection.

    aiohttp-sse's response (its headers, chunked encoding) without its per-connection costs:
    aiohttp-sse starts a ping task per connection, while the hub sends heartbeats to every stream
    from one timer (``Writer``); it also keeps the socket to restore TCP_USER_TIMEOUT at the end,
    while the hub sets the option and keeps nothing. The response object is the outlet itself,
    not a second object beside it: what an idle stream holds is paid per subscriber.
    """

    def __init__(self, headers: dict[str, str], send_timeout: float) -> None:
        super().__init__(headers=headers, send_timeout=send_timeout)
        self.transport: asyncio.Transport | None = None
        # the writer's chunked encoding: HTTP/1.0 streams are written raw
        self.framed = True
        self._head_sent = False

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:
            return self._payload_writer
        if request.version < HttpVersion11:
            # an HTTP/1.0 stream ends by closing the connection (no chunked encoding): it must
            # not say "Connection: keep-alive" as aiohttp-sse does
            self.headers.pop("Connection", None)
            self.force_close()
        _abort_when_unacknowledged(request, self._send_timeout)
        # The keep-alive timer only closes a connection between requests; while a stream
        # runs it is a timer held per subscriber for nothing (aiohttp's WebSocketResponse
        # cancels it the same way). aiohttp sets keep-alive again when the stream ends.
        request.protocol.keep_alive(False)
        writer = await web.StreamResponse.prepare(self, request)
        # The head is on its way as bytes: the headers, and the strings multidict made for
        # each of them while they were written, are memory paid per subscriber from now on.
        self.headers.clear()
        self.transport = request.transport
        self.framed = bool(getattr(writer, "chunked", True))
        return writer

    async def write_replay(self, data: bytes, max_pending: int, stall: float) -> bool:
        """Write part of a stream's head, then wait (up to ``stall`` s) for the client to read.

        Returns False for a slow reader (to be cut off); raises ``ConnectionResetError`` when
        the client has gone. The first write goes through aiohttp, which sends the response
        headers with it; the rest go straight to the transport, as live frames do.
        """
        transport = self.transport
        if transport is None or self._payload_writer is None:
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
                    await self._payload_writer.drain()
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


#: The position of a frame that is no event (a tick, a close): above every floor.
ANY_FLOOR = sys.maxsize


class Writer:
    """Writes the frames the hub queued, once per loop pass; heartbeats; slow-reader cut-off."""

    def __init__(
        self, metrics: Metrics, max_pending: int, drop: Callable[[Subscription], None]
    ) -> None:
        self.dirty: list[Subscription] = []  # the hub appends here on its hot path
        self.published_at: list[float] = []  # store times of events written by the next flush
        self._scheduled = False
        self._metrics = metrics
        self._limit = max_pending
        self._drop = drop

    def fan_out(
        self, subscriptions: Iterable[Subscription], frame: bytes, position: int = ANY_FLOOR
    ) -> None:
        """Queue ``frame`` for each subscription whose replay did not already write it (its
        ``floor`` is below ``position``; a frame without one, a tick or a close, passes every
        floor). The caller calls ``schedule`` once for all its frames. The fan-out's inner
        loop, written once, here."""
        dirty = self.dirty
        for subscription in subscriptions:
            if position <= subscription.floor:
                continue
            pending = subscription.pending
            if not pending:
                subscription.pending = frame  # a lone frame as itself: see Subscription
                dirty.append(subscription)
            elif isinstance(pending, bytes):
                subscription.pending = [pending, frame]
            else:
                pending.append(frame)

    def schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Write every dirty subscription's pending frames in one write each."""
        self._scheduled = False
        dirty, self.dirty = self.dirty, []
        started = time.perf_counter()
        limit = self._limit
        delivered = 0
        last_data = b""
        last_chunk = b""
        for subscription in dirty:
            outlet = subscription.outlet
            pending = subscription.pending
            transport = outlet.transport if outlet is not None else None
            subscription.pending = WRITTEN  # empty as (), and marks the stream for the beat
            if not pending or outlet is None or transport is None or transport.is_closing():
                continue  # closed meanwhile
            if isinstance(pending, bytes):
                data = pending
                delivered += 1
            else:
                data = b"".join(pending)
                delivered += len(pending)
            if outlet.framed:
                # Subscribers of one channel usually share the very same frame: frame it once.
                if data is not last_data:
                    last_data = data
                    last_chunk = sse.http_chunk(data)
                transport.write(last_chunk)
            else:
                transport.write(data)
            if transport.get_write_buffer_size() > limit:
                self._drop(subscription)
        metrics = self._metrics
        metrics.events_delivered += delivered
        finished = time.time()
        observe = metrics.publish_latency.observe
        for stored in self.published_at:
            observe(finished - stored)
        self.published_at.clear()
        metrics.fanout_duration.observe(time.perf_counter() - started)

    async def beat_forever(
        self, interval: float, streams: Callable[[], Iterable[Subscription]]
    ) -> None:
        """A comment line every ``interval`` seconds, from one task, to every live stream that
        carried no frame since the previous one (those need none: data keeps proxies from
        timing them out, and starts the kernel's TCP_USER_TIMEOUT clock as a comment would)."""
        chunked = sse.http_chunk(sse.HEARTBEAT)
        while True:
            await asyncio.sleep(interval)
            for subscription in list(streams()):
                pending = subscription.pending
                if pending:  # frames queued: this loop pass writes them
                    continue
                if pending is WRITTEN:
                    subscription.pending = ()
                    continue
                outlet = subscription.outlet
                if subscription.state is not State.LIVE or outlet is None:
                    continue  # a replay is written whole frames at a time: no comment in it
                transport = outlet.transport
                if transport is None or transport.is_closing():
                    continue
                transport.write(chunked if outlet.framed else sse.HEARTBEAT)
                if transport.get_write_buffer_size() > self._limit:
                    self._drop(subscription)
