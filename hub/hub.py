"""The hub: channels, subscribers, and the fan-out of ready-made frames to their sockets.

The hot path is ``deliver`` → ``_flush``. An event's frame is encoded once (by the backplane) and
the same bytes object is appended to the pending list of every subscriber of its channel; one
callback per event-loop iteration then writes each subscriber's pending frames to its transport in
a single ``write``. So a burst of N events costs each subscriber one write, not N, and there is no
task, queue or timer per subscriber: an idle subscriber is a small object in a dict.

A subscriber goes through two states:

1. *syncing*: registered on its channels before the history is read, so every live event that
   arrives meanwhile is held, not lost;
2. *live*: after its first write (retry hint, replayed history, then the held events newer than
   the history), it receives live frames. ``floor`` is the newest position it was sent, and live
   events at or below it are skipped, so an event both in the history and live is sent once.

This is the history/live merge without gap or duplicate, even while publishes race the replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import Any

import orjson

from hub import sse
from hub.backplane import CONNECTIONS, Backplane, Reset
from hub.config import Config
from hub.events import Draft, Event, parse_position
from hub.metrics import Metrics
from hub.ticker import Clock, clock_channel, is_clock

__all__ = ["AtCapacity", "Hub", "Subscriber"]

RESET_EVENT = "reset"


class AtCapacity(Exception):
    """The hub holds ``max_subscribers`` streams or ``max_channels`` channels, or is stopping."""


class Subscriber:
    """One open event stream (one connection), on one or more channels."""

    __slots__ = ("channels", "chunked", "dirty", "done", "floor", "held", "pending", "transport")

    def __init__(self, channels: tuple[str, ...], done: asyncio.Future[None]) -> None:
        self.channels = channels
        self.pending: list[bytes] = []  # frames not yet written
        self.dirty = False  # queued for the next flush
        self.floor = 0  # newest position sent; live events at or below it are skipped
        self.held: list[Event] | None = []  # live events that arrived while syncing
        self.transport: asyncio.Transport | None = None  # set once the stream's head is written
        self.chunked = True  # HTTP/1.1 chunked framing (HTTP/1.0 streams are written raw)
        self.done = done  # resolved when the hub ends the stream


class Channel:
    __slots__ = ("clock", "live", "name", "syncing")

    def __init__(self, name: str, clock: Clock | None) -> None:
        self.name = name
        self.live: dict[Subscriber, None] = {}
        self.syncing: dict[Subscriber, None] = {}
        self.clock = clock

    def __len__(self) -> int:
        """Its subscribers, live and syncing."""
        return len(self.live) + len(self.syncing)


class Hub:
    def __init__(self, config: Config, backplane: Backplane, metrics: Metrics) -> None:
        self.config = config
        self.backplane = backplane
        self.metrics = metrics
        self._channels: dict[str, Channel] = {}
        self._subscribers: dict[Subscriber, None] = {}
        self._dirty: list[Subscriber] = []
        self._flush_scheduled = False
        self._published_at: list[float] = []  # store times of events written by the next flush
        self._retry = sse.retry(config.retry)
        self._max_pending = config.max_pending_bytes
        self._declared_clocks = [clock_channel(c.timezone, c.interval) for c in config.clocks]
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        await self.backplane.start(self)
        self._spawn(self._beat(), "heartbeat")

    async def end_streams(self) -> None:
        """First step of a shutdown: refuse new streams, write what is pending, end every stream.

        Each stream ends with a clean end of the HTTP response, so browsers reconnect (to another
        replica) and resume with ``Last-Event-ID``.
        """
        self._closing = True
        self._flush()
        for subscriber in list(self._subscribers):
            self.close(subscriber)

    async def stop(self) -> None:
        await self.end_streams()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.backplane.close()

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- subscribing -------------------------------------------------------------------------

    def open(self, names: Sequence[str]) -> Subscriber:
        """Register a new stream on ``names`` (validated, distinct) in the syncing state."""
        if self._closing:
            raise AtCapacity("the hub is shutting down")
        if len(self._subscribers) >= self.config.max_subscribers:
            raise AtCapacity("max_subscribers reached")
        new = sum(name not in self._channels for name in names)
        if new and len(self._channels) + new > self.config.max_channels:
            raise AtCapacity("max_channels reached")
        subscriber = Subscriber(tuple(names), asyncio.get_running_loop().create_future())
        for name in names:
            channel = self._channels.get(name)
            if channel is None:
                channel = self._open_channel(name)
            channel.syncing[subscriber] = None
        self._subscribers[subscriber] = None
        return subscriber

    async def replay(
        self, subscriber: Subscriber, last_event_id: str | None, from_start: bool
    ) -> bytes:
        """The first bytes of a stream: retry hint, reset if any, history, held live events.

        Also moves the subscriber to the live state; raises ``BackplaneUnavailable`` when the
        history cannot be read (the caller then ends the stream, and the client retries).
        """
        parts = [self._retry]
        feeds = [name for name in subscriber.channels if not is_clock(name)]
        last = 0
        if feeds:
            # A subscriber without history starts at the frontier: events at or below it may
            # predate the channels being followed, so none of them are sent.
            last = await self.backplane.follow(feeds)
            if last_event_id is not None or from_start:
                last = 0
                after = None if last_event_id is None else parse_position(last_event_id)
                history = await self.backplane.history(feeds, after)
                reset = history.reset
                if last_event_id is not None and after is None:
                    oldest = history.events[0].id if history.events else None
                    reset = Reset("unknown-id", oldest)
                if reset is not None:
                    parts.append(_reset_frame(reset))
                elif after is not None:
                    last = after
                for event in history.events:
                    parts.append(event.frame)
                    last = event.position
                self.metrics.events_delivered += len(history.events)
        if subscriber.held is None:  # closed while the history was read
            return b"".join(parts)
        now = time.time()
        for name in subscriber.channels:
            clock = self._channels[name].clock
            if clock is not None:  # the current time at once, not only at the next tick
                parts.append(clock.frame(now))
                self.metrics.events_delivered += 1
        held, subscriber.held = subscriber.held, None
        for event in held:
            if event.position > last:
                parts.append(event.frame)
                last = event.position
                self.metrics.events_delivered += 1
        subscriber.floor = last
        for name in subscriber.channels:
            channel = self._channels[name]
            del channel.syncing[subscriber]
            channel.live[subscriber] = None
        return b"".join(parts)

    def attach(self, subscriber: Subscriber, transport: asyncio.Transport, chunked: bool) -> None:
        """From now on, write this stream's frames straight to its transport."""
        if subscriber not in self._subscribers:
            return
        subscriber.transport = transport
        subscriber.chunked = chunked
        if subscriber.pending:
            self._mark(subscriber)

    def close(self, subscriber: Subscriber) -> None:
        """Forget a stream (idempotent); ends its response if the handler is still waiting."""
        if self._subscribers.pop(subscriber, False) is False:
            return
        for name in subscriber.channels:
            channel = self._channels.get(name)
            if channel is None:
                continue
            channel.live.pop(subscriber, None)
            channel.syncing.pop(subscriber, None)
            if not channel:
                self._close_channel(channel)
        subscriber.transport = None
        subscriber.held = None
        subscriber.pending.clear()
        if not subscriber.done.done():
            subscriber.done.set_result(None)

    def _open_channel(self, name: str) -> Channel:
        clock = Clock(name, self._emit) if is_clock(name) else None
        channel = self._channels[name] = Channel(name, clock)
        if clock is not None:
            clock.start()
        return channel

    def _close_channel(self, channel: Channel) -> None:
        del self._channels[channel.name]
        if channel.clock is not None:
            task = channel.clock.stop()
            if task is not None:  # awaited on shutdown like every other task
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        else:
            self.backplane.unfollow(channel.name)

    # -- publishing and fan-out --------------------------------------------------------------

    async def publish(
        self, drafts: Sequence[Draft], idempotency_key: str | None
    ) -> tuple[list[dict[str, Any]], bool]:
        """Store and fan out; returns the receipts and whether the key had published them already.

        Raises ``BackplaneUnavailable`` or ``BackplaneFull``; then nothing was acknowledged.
        """
        published = await self.backplane.publish(drafts, idempotency_key)
        if not published.replayed:
            self.metrics.events_published += len(drafts)
        receipts = [
            {"id": ident, "channel": d.channel, "subscribers": self.subscriber_count(d.channel)}
            for ident, d in zip(published.ids, drafts, strict=True)
        ]
        return receipts, published.replayed

    def deliver(self, events: Sequence[Event]) -> None:
        """Live events from the backplane: queue each frame for every subscriber of its channel."""
        channels = self._channels
        dirty = self._dirty
        published_at = self._published_at
        for event in events:
            channel = channels.get(event.channel)
            if channel is None:
                continue
            frame = event.frame
            position = event.position
            for subscriber in channel.live:
                if position > subscriber.floor:
                    subscriber.pending.append(frame)
                    if not subscriber.dirty:
                        subscriber.dirty = True
                        dirty.append(subscriber)
            for subscriber in channel.syncing:
                subscriber.held.append(event)  # type: ignore[union-attr]
            if channel.live:
                published_at.append(event.published_at)
        if dirty and not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _emit(self, name: str, frame: bytes) -> None:
        """Fan out an ephemeral frame (a clock tick): no position, no history."""
        channel = self._channels.get(name)
        if channel is None:
            return
        for subscriber in channel.live:
            subscriber.pending.append(frame)
            self._mark(subscriber)

    def _mark(self, subscriber: Subscriber) -> None:
        if not subscriber.dirty:
            subscriber.dirty = True
            self._dirty.append(subscriber)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Write every subscriber's pending frames in one write each."""
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, []
        started = time.perf_counter()
        limit = self._max_pending
        delivered = 0
        last_data = b""
        last_chunk = b""
        for subscriber in dirty:
            subscriber.dirty = False
            transport = subscriber.transport
            if transport is None:  # not attached yet: keeps its frames; or closed: has none
                continue
            pending = subscriber.pending
            if transport.is_closing():
                pending.clear()
                continue
            data = pending[0] if len(pending) == 1 else b"".join(pending)
            delivered += len(pending)
            pending.clear()
            if subscriber.chunked:
                # Subscribers of one channel usually share the very same frame: frame it once.
                if data is not last_data:
                    last_data = data
                    last_chunk = sse.http_chunk(data)
                transport.write(last_chunk)
            else:
                transport.write(data)
            if transport.get_write_buffer_size() > limit:
                self._drop(subscriber)
        self.metrics.events_delivered += delivered
        finished = time.time()
        observe = self.metrics.publish_latency.observe
        for stored in self._published_at:
            observe(finished - stored)
        self._published_at.clear()
        self.metrics.fanout_duration.observe(time.perf_counter() - started)

    def _drop(self, subscriber: Subscriber) -> None:
        """Close a subscriber that stopped reading; it resumes with Last-Event-ID later."""
        self.metrics.subscribers_dropped += 1
        if subscriber.transport is not None:
            subscriber.transport.abort()  # a graceful close would wait on the full buffer
        self.close(subscriber)

    async def _beat(self) -> None:
        chunked = sse.http_chunk(sse.HEARTBEAT)
        while True:
            await asyncio.sleep(self.config.heartbeat)
            for subscriber in list(self._subscribers):
                transport = subscriber.transport
                if transport is None or transport.is_closing():
                    continue
                transport.write(chunked if subscriber.chunked else sse.HEARTBEAT)
                if transport.get_write_buffer_size() > self._max_pending:
                    self._drop(subscriber)

    def lost(self, channel: str) -> None:
        """End the streams of a channel whose live order was broken; clients resume and get a
        ``reset`` if the history no longer reaches back far enough."""
        found = self._channels.get(channel)
        if found is not None:
            for subscriber in [*found.live, *found.syncing]:
                self.close(subscriber)

    # -- introspection -----------------------------------------------------------------------

    def local_counts(self) -> dict[str, int]:
        counts = {name: len(channel) for name, channel in self._channels.items()}
        counts[CONNECTIONS] = len(self._subscribers)
        return counts

    def subscriber_count(self, name: str) -> int:
        """Subscribers of a channel on every hub process (others' counts are a few seconds old)."""
        channel = self._channels.get(name)
        local = 0 if channel is None else len(channel)
        return local + self.backplane.remote_counts().get(name, 0)

    @property
    def cluster_subscribers(self) -> int:
        return len(self._subscribers) + self.backplane.remote_counts().get(CONNECTIONS, 0)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    @property
    def channel_count(self) -> int:
        return len(self._channels)

    @property
    def tickers(self) -> int:
        return sum(1 for c in self._channels.values() if c.clock is not None and c.clock.running)

    async def channel_list(self) -> list[dict[str, Any]]:
        last_ids = await self.backplane.channels()
        remote = {n for n in self.backplane.remote_counts() if n != CONNECTIONS}
        names = set(last_ids) | set(self._channels) | set(self._declared_clocks) | remote
        return [
            {
                "name": name,
                "subscribers": self.subscriber_count(name),
                "clock": is_clock(name),
                "last_id": last_ids.get(name),
            }
            for name in sorted(names)
        ]


def _reset_frame(reset: Reset) -> bytes:
    data = orjson.dumps({"reason": reset.reason, "oldest_id": reset.oldest_id}).decode()
    return sse.encode(RESET_EVENT, data)
