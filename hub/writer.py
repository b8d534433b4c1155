"""A stream's output: the frames queued for it, written once per loop pass; heartbeats.

``Output`` is the part of a stream (``hub.stream.Stream`` extends it) that this module alone
reads and writes: ``pending`` (the frames queued for the next flush, in one of three shapes) and
``sink`` (the socket side, a ``Sink``). The hub core hands each frame to ``fan_out``, which
queues it on the streams, and asks ``Writer.schedule`` for a flush; the ``Writer`` then writes
each dirty stream's pending frames with a single ``transport.write`` once per event-loop pass,
HTTP/1.1 chunk-framed (once per shared bytes object when streams share a frame). So a burst of N
events costs each subscriber one write, not N, and no subscriber has a task, queue or timer of
its own: one heartbeat task serves every stream.

The one back-pressure rule, for live frames and replays alike: a stream whose unsent output
passes ``max_pending_bytes`` is a slow reader and is cut off (aborted: a graceful close would
wait on the full buffer); it resumes with ``Last-Event-ID`` when it reads again. The writer ends
such a stream itself (``Output.cut_off``: its ``done`` resolves) and the stream's owner, awaiting
``done``, forgets it: no call back up into the hub. One exception, asked only there: ``spare``
(latest-wins channels, ``hub.conflation``) may keep a stream that loses nothing by waiting.

Heartbeats (issue 20 hole 9): a vanished subscriber must be released within two heartbeat
intervals. The kernel drops a connection whose data stays unacknowledged for
``tcp_user_timeout`` (default: one heartbeat interval), so every stream must carry *some* bytes
at least once per interval. The beat task wakes every half interval and writes a comment to a
stream that carried nothing for two of its wake-ups (between one and one and a half intervals):
a stream that carried frames needs no comment, which at one event per stream per interval halves
the writes, and an idle one gets one comment per interval, as before.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

from hub import sse
from hub.metrics import Metrics

__all__ = ["ANY_FLOOR", "Output", "Sink", "Writer", "fan_out"]


class Sink(Protocol):
    """The socket side of a stream as the core sees it (``hub.outlet.Outlet`` is one; the core
    never imports it). ``transport`` is None until the response headers are out."""

    @property
    def transport(self) -> asyncio.WriteTransport | None: ...

    @property
    def framed(self) -> bool:
        """Live frames go out as HTTP/1.1 chunks (False: an HTTP/1.0 stream, written raw)."""

    async def open(self) -> None:
        """Send the response headers."""

    async def write_head(self, data: bytes, max_pending: int, stall: float) -> bool:
        """Write part of a stream's head and wait (up to ``stall`` s) for the client to read;
        False for a slow reader. Raises ``ConnectionResetError`` when the client has gone."""

    def abort(self) -> None: ...


class _Marker(tuple):  # type: ignore[type-arg]
    """An empty pending queue (falsy, as ``()``) that also says where the stream stands."""

    __slots__ = ()


#: Not live yet (its head is being written) or ended: no heartbeat, no flush.
QUIET: tuple[()] = _Marker()
#: Written since the beat task's previous wake-up.
WRITTEN: tuple[()] = _Marker()
#: Written before the previous wake-up and not since: the next wake-up sends a comment.
AGED: tuple[()] = _Marker()

#: The position of a frame that is no event (a tick, a close): above every floor.
ANY_FLOOR = sys.maxsize


class Output:
    """A stream's queue and socket. Not a list each: an idle stream's empty list would be memory
    paid per subscriber, and a list made per subscriber per event is a container the garbage
    collector counts, so fan-out to 10k streams would start its collections (whole-heap ones
    too) many times per event, which is the tail of the latency. So ``pending`` is the frame
    itself when there is one, a list from the second on, else a shared empty marker."""

    __slots__ = ("done", "floor", "pending", "sink")

    def __init__(self, done: asyncio.Future[None]) -> None:
        self.pending: bytes | list[bytes] | tuple[()] = QUIET
        self.sink: Sink | None = None
        # newest position written; live events at or below it are skipped (``hub.stream``)
        self.floor = 0
        self.done = done  # resolved when the stream ends

    def attach(self, sink: Sink) -> None:
        """The response is prepared: a drop from now on aborts the connection."""
        self.sink = sink

    def open_output(self) -> None:
        """The head is written: live frames and heartbeats from now on."""
        self.pending = WRITTEN

    def close_output(self) -> None:
        """Ended: nothing more is written; whoever awaits ``done`` returns."""
        self.sink = None
        self.pending = QUIET
        self.floor = ANY_FLOOR  # no fan-out queues a frame for it any more
        if not self.done.done():
            self.done.set_result(None)

    def cut_off(self) -> None:
        """A slow reader: abort its connection (a graceful close would wait on the full
        buffer) and end it."""
        if self.sink is not None:
            self.sink.abort()
        self.close_output()


S = TypeVar("S", bound=Output)


def fan_out(outputs: Iterable[Output], frame: bytes, dirty: list[Output], position: int) -> None:
    """Queue ``frame`` for each stream whose replay did not already write it (its ``floor`` is
    below ``position``; a frame without one, a tick or a close, passes every floor of a stream
    still open). The caller schedules the flush once for all its frames. The fan-out's inner
    loop, written once, here."""
    for output in outputs:
        if position <= output.floor:
            continue
        pending = output.pending
        if not pending:
            output.pending = frame  # a lone frame as itself: see Output
            dirty.append(output)
        elif isinstance(pending, bytes):
            output.pending = [pending, frame]
        else:
            pending.append(frame)


class Writer:
    """Writes the frames queued by ``fan_out``, once per loop pass; heartbeats; slow readers."""

    def __init__(self, metrics: Metrics, max_pending: int) -> None:
        self.dirty: list[Output] = []  # fan_out appends here on the hot path
        self.published_at: list[float] = []  # store times of events written by the next flush
        self._scheduled = False
        self._metrics = metrics
        self._limit = max_pending
        #: asked before a slow reader is cut off: True keeps it (``hub.conflation``)
        self.spare: Callable[[Output], bool] | None = None
        #: the loop, kept at the first schedule: on CPython 3.11 each get_running_loop() is a
        #: getpid() syscall (seen by strace, one per published event)
        self._loop: asyncio.AbstractEventLoop | None = None

    def schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write every dirty stream's pending frames in one write each."""
        self._scheduled = False
        dirty, self.dirty = self.dirty, []
        started = time.perf_counter()
        limit = self._limit
        delivered = 0
        last_data = b""
        last_chunk = b""
        for output in dirty:
            sink = output.sink
            pending = output.pending
            transport = sink.transport if sink is not None else None
            output.pending = WRITTEN  # empty as (), and marks the stream for the beat
            if not pending or sink is None or transport is None or transport.is_closing():
                continue  # closed meanwhile
            if isinstance(pending, bytes):
                data = pending
                delivered += 1
            else:
                data = b"".join(pending)
                delivered += len(pending)
            if sink.framed:
                # Subscribers of one channel usually share the very same frame: frame it once.
                if data is not last_data:
                    last_data = data
                    last_chunk = sse.http_chunk(data)
                transport.write(last_chunk)
            else:
                transport.write(data)
            if transport.get_write_buffer_size() > limit and not self._spared(output):
                self._metrics.subscribers_dropped += 1
                output.cut_off()
        metrics = self._metrics
        metrics.events_delivered += delivered
        finished = time.time()
        observe = metrics.publish_latency.observe
        for stored in self.published_at:
            observe(finished - stored)
        self.published_at.clear()
        metrics.fanout_duration.observe(time.perf_counter() - started)

    async def beat_forever(
        self, interval: float, streams: Callable[[], Iterable[S]], beat_of: Callable[[S], bytes]
    ) -> None:
        """Every half ``interval``: a comment (``beat_of(stream)``: its format's) to each live
        stream that carried nothing since the wake-up before the previous one."""
        while True:
            await asyncio.sleep(interval / 2)
            self.beat(streams(), beat_of)

    def beat(self, streams: Iterable[S], beat_of: Callable[[S], bytes]) -> None:
        """One wake-up of the beat task (see the module docstring)."""
        last_beat = last_chunk = b""
        for output in list(streams):
            pending = output.pending
            if pending is WRITTEN:
                output.pending = AGED
                continue
            if pending is not AGED:
                continue  # frames queued (this loop pass writes them), not live yet, or ended
            sink = output.sink
            transport = sink.transport if sink is not None else None
            if sink is None or transport is None or transport.is_closing():
                continue
            beat = beat_of(output)
            if sink.framed:
                if beat is not last_beat:
                    last_beat, last_chunk = beat, sse.http_chunk(beat)
                transport.write(last_chunk)
            else:
                transport.write(beat)
            output.pending = WRITTEN
            if transport.get_write_buffer_size() > self._limit and not self._spared(output):
                self._metrics.subscribers_dropped += 1
                output.cut_off()

    def _spared(self, output: Output) -> bool:
        """Whether a stream past the limit is kept all the same (``spare``: latest-wins)."""
        return self.spare is not None and self.spare(output)
