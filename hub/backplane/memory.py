"""The in-process backplane: one hub process, history in memory.

It is a real implementation, not a test double: a single process needs nothing else. Everything
here runs on the event loop without awaiting, so publish, store and delivery happen in one step
and a subscriber's history read can never interleave with a publish.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from hub.backplane import (
    BackplaneFull,
    BackplaneState,
    History,
    Listener,
    Reset,
)
from hub.backplane.memory_log import Log, position_of
from hub.backplane.memory_publish import MemoryPublish
from hub.backplane.memory_streams import MemoryStreams, StreamRecord
from hub.backplane.since import time_floor
from hub.backplane.tombstones import Tombstones
from hub.events import Draft, Event

if TYPE_CHECKING:
    from hub.config import Config

__all__ = ["MemoryBackplane", "next_position"]

#: How often quiet channels and expired idempotency keys are swept, in seconds.
SWEEP_INTERVAL = 60.0
#: Tickets waiting to be spent at most, whatever their age (a memory guard).
MAX_TICKETS = 100_000


def next_position(last: int) -> int:
    """The next position: one more than the last, and never behind the clock in microseconds.

    Tying positions to the clock keeps them increasing across restarts of an in-memory hub, so
    an id a browser kept from before a restart is recognised as older than anything retained.
    """
    return max(last + 1, time.time_ns() // 1000)


class MemoryBackplane(MemoryPublish, MemoryStreams):
    """``Backplane`` with ``Health``, ``Catalog``, ``Tickets``, ``Deletion``, ``Closing``,
    ``Streams`` (``memory_streams``) and ``Since``; no ``Presence`` (one process counts alone)."""

    def __init__(self, config: Config) -> None:
        self._history_size = config.history_size
        self._history_ttl = config.history_ttl
        self._max_channels = config.max_channels
        self._max_bytes = config.max_history_bytes  # 0: no bound but history_size
        self._bytes = 0  # the sum of the logs' bytes
        self._logs: dict[str, Log] = {}
        self._idempotency: OrderedDict[str, tuple[float, list[str]]] = OrderedDict()
        self._listener: Listener | None = None
        # Positions below the origin were issued by an earlier process: unknown here.
        self._origin = next_position(0)
        self._last = self._origin - 1
        # The highest position of any log swept away whole; resumes from before it may have gaps.
        self._forgotten = 0
        self._tickets: dict[str, tuple[float, list[str]]] = {}  # digest -> (expiry, channels)
        self._tombstones = Tombstones(config.history_ttl)  # the deleted channels
        self._closed = Tombstones(config.history_ttl)  # the closed ones (history kept)
        self._streams: dict[str, StreamRecord] = {}  # the Durable Streams (memory_streams)
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self, listener: Listener) -> None:
        self._listener = listener
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="memory-backplane-sweep")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    def _next_position(self) -> int:
        return next_position(self._last)

    def _erase(self, channel: str) -> None:
        """Delete the channel (and its stream) now: history gone, tombstone, listener told."""
        log = self._logs.pop(channel, None)
        if log is not None:  # gone on purpose: not "forgotten", so resumes need no reset
            self._bytes -= log.bytes
        if self._streams.pop(channel, None) is not None:
            self._closed.lift(channel)  # a stream's close lasts as long as the stream
        self._tombstones.mark(channel, time.time())
        if self._listener is not None:
            self._listener.deleted(channel)

    async def history(
        self, channels: Sequence[str], after: int | None, max_bytes: int, *, continued: bool = False
    ) -> History:
        cutoff = time.time() - self._history_ttl
        logs = [log for name in channels if (log := self._logs.get(name)) is not None]
        for log in logs:
            before = log.bytes
            log.expire(cutoff)
            self._bytes += log.bytes - before
        reset: Reset | None = None
        if after is not None and not continued:
            if after > self._last or after < self._origin:
                reset = Reset("unknown-id", None)
            elif any(log.trimmed > after for log in logs) or (
                len(logs) < len(channels) and after < self._forgotten
            ):
                reset = Reset("expired", None)
        start = None if reset is not None else after
        merged = heapq.merge(*(log.after(start) for log in logs), key=position_of)
        events: list[Event] = []
        size = 0
        more = False
        for event in merged:
            if events and size + len(event.frame) > max_bytes:
                more = True
                break
            events.append(event)
            size += len(event.frame)
        if reset is not None:
            firsts = [first for log in logs if (first := log.oldest) is not None]
            oldest = min(firsts, key=position_of).id if firsts else None
            reset = Reset(reset.reason, oldest)
        return History(events, reset, more)

    async def position_at(self, when: float) -> int | None:
        """``Since``: a position is at least its store time in microseconds (``next_position``)."""
        return after if (after := time_floor(when)) < self._last else None

    async def follow(self, channels: Sequence[str]) -> int:
        """Every event reaches the listener as it is stored; the hub drops what nobody follows."""
        return 0

    def unfollow(self, channel: str) -> None:
        pass

    async def channels(self) -> dict[str, str]:
        return {name: event.id for name, log in self._logs.items() if (event := log.newest)}

    async def issue_ticket(self, ticket: str, channels: Sequence[str], ttl: float) -> None:
        now = time.monotonic()
        if len(self._tickets) >= MAX_TICKETS:
            self._tickets = {k: v for k, v in self._tickets.items() if v[0] > now}
            if len(self._tickets) >= MAX_TICKETS:
                raise BackplaneFull(f"{MAX_TICKETS} tickets are waiting to be spent")
        self._tickets[ticket] = (now + ttl, list(channels))

    async def spend_ticket(self, ticket: str) -> list[str] | None:
        found = self._tickets.pop(ticket, None)
        if found is None or found[0] <= time.monotonic():
            return None
        return found[1]

    async def delete_channel(self, channel: str, anyway: bool) -> bool | None:
        if self._tombstones.among([channel]):
            return None
        log = self._logs.get(channel)
        if (log is None or not log) and not anyway and channel not in self._streams:
            return False
        self._erase(channel)
        return True

    def deleted(self, channels: Sequence[str]) -> list[str]:
        return self._tombstones.among(channels)

    async def close_channel(self, channel: str) -> bool | None:
        if self._tombstones.among([channel]):
            return None
        if self._closed.among([channel]):
            return False
        self._mark_closed(channel, None)  # in one step with the publishes: no await
        if self._listener is not None:
            self._listener.closed(channel)
        return True

    def closed(self, channels: Sequence[str]) -> list[str]:
        return self._closed.among(channels)

    def state(self) -> BackplaneState:
        detail = {"channels": len(self._logs), "history_bytes": self._bytes}
        return BackplaneState(kind="memory", detail=detail)

    def _make_room(self, drafts: Sequence[Draft], now: float) -> None:
        new = {d.channel for d in drafts if d.channel not in self._logs}
        if len(self._logs) + len(new) <= self._max_channels:
            return
        self._sweep(now)
        if len(self._logs) + len(new) > self._max_channels:
            raise BackplaneFull(
                f"the hub holds history for {len(self._logs)} channels; the limit "
                f"(max_channels) is {self._max_channels}"
            )

    def _sweep(self, now: float) -> None:
        cutoff = now - self._history_ttl
        for name in list(self._logs):
            log = self._logs[name]
            before = log.bytes
            log.expire(cutoff)
            self._bytes += log.bytes - before
            if not log:
                self._forgotten = max(self._forgotten, log.trimmed)
                del self._logs[name]
        self._expire_keys(now)
        self._expire_streams(now)
        monotonic = time.monotonic()
        self._tickets = {k: v for k, v in self._tickets.items() if v[0] > monotonic}

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            self._sweep(time.time())
