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
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence

from hub import sse
from hub.backplane import (
    BackplaneFull,
    BackplaneState,
    History,
    Listener,
    Published,
    Reset,
)
from hub.events import Draft, Event

__all__ = ["MemoryBackplane", "next_position"]

#: How often quiet channels and expired idempotency keys are swept, in seconds.
SWEEP_INTERVAL = 60.0
#: Idempotency keys kept at most, whatever their age (a memory guard).
MAX_IDEMPOTENCY_KEYS = 100_000


def next_position(last: int) -> int:
    """The next position: one more than the last, and never behind the clock in microseconds.

    Tying positions to the clock keeps them increasing across restarts of an in-memory hub, so
    an id a browser kept from before a restart is recognised as older than anything retained.
    """
    return max(last + 1, time.time_ns() // 1000)


class _Log:
    """One channel's retained events, oldest first."""

    __slots__ = ("events", "trimmed")

    def __init__(self) -> None:
        self.events: deque[Event] = deque()
        self.trimmed = 0  # the highest position dropped from this log (0: none)

    def expire(self, cutoff: float) -> None:
        events = self.events
        while events and events[0].published_at < cutoff:
            self.trimmed = events.popleft().position

    def after(self, position: int) -> list[Event]:
        found: list[Event] = []
        for event in reversed(self.events):
            if event.position <= position:
                break
            found.append(event)
        found.reverse()
        return found


class MemoryBackplane:
    def __init__(self, *, history_size: int, history_ttl: float, max_channels: int) -> None:
        self._history_size = history_size
        self._history_ttl = history_ttl
        self._max_channels = max_channels
        self._logs: dict[str, _Log] = {}
        self._idempotency: OrderedDict[str, tuple[float, list[str]]] = OrderedDict()
        self._listener: Listener | None = None
        # Positions below the origin were issued by an earlier process: unknown here.
        self._origin = next_position(0)
        self._last = self._origin - 1
        # The highest position of any log swept away whole; resumes from before it may have gaps.
        self._forgotten = 0
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

    async def publish(self, drafts: Sequence[Draft], idempotency_key: str | None) -> Published:
        now = time.time()
        if idempotency_key is not None:
            self._expire_keys(now)
            seen = self._idempotency.get(idempotency_key)
            if seen is not None:
                return Published(ids=seen[1], replayed=True)
        self._make_room(drafts, now)
        events: list[Event] = []
        ids: list[str] = []
        position = self._last
        cutoff = now - self._history_ttl
        logs = self._logs
        for draft in drafts:
            position = next_position(position)
            ident = f"{position}:{draft.channel}"  # event_id(), inlined on the publish path
            event = Event(position, draft.channel, sse.with_id(ident, draft.body), now)
            events.append(event)
            ids.append(ident)
            log = logs.get(draft.channel)
            if log is None:
                log = logs[draft.channel] = _Log()
            retained = log.events
            retained.append(event)
            if len(retained) > self._history_size:
                log.trimmed = retained.popleft().position
            if retained[0].published_at < cutoff:
                log.expire(cutoff)
        self._last = position
        if idempotency_key is not None:
            self._idempotency[idempotency_key] = (now + self._history_ttl, ids)
            if len(self._idempotency) > MAX_IDEMPOTENCY_KEYS:
                self._idempotency.popitem(last=False)
        if self._listener is not None:
            self._listener.deliver(events)
        return Published(ids=ids)

    async def history(self, channels: Sequence[str], after: int | None) -> History:
        cutoff = time.time() - self._history_ttl
        logs = [log for name in channels if (log := self._logs.get(name)) is not None]
        for log in logs:
            log.expire(cutoff)
        reset: Reset | None = None
        if after is not None:
            if after > self._last or after < self._origin:
                reset = Reset("unknown-id", None)
            elif any(log.trimmed > after for log in logs) or (
                len(logs) < len(channels) and after < self._forgotten
            ):
                reset = Reset("expired", None)
        if after is None or reset is not None:
            runs = [list(log.events) for log in logs]
        else:
            runs = [log.after(after) for log in logs]
        events = list(heapq.merge(*runs, key=lambda event: event.position))
        if reset is not None:
            oldest = min(
                (log.events[0] for log in logs if log.events),
                default=None,
                key=lambda event: event.position,
            )
            reset = Reset(reset.reason, oldest.id if oldest else None)
        return History(events, reset)

    async def follow(self, channels: Sequence[str]) -> int:
        """Every event reaches the listener as it is stored; the hub drops what nobody follows."""
        return 0

    def unfollow(self, channel: str) -> None:
        pass

    async def channels(self) -> dict[str, str]:
        return {name: log.events[-1].id for name, log in self._logs.items() if log.events}

    def remote_counts(self) -> Mapping[str, int]:
        return {}

    def state(self) -> BackplaneState:
        return BackplaneState(kind="memory", detail={"channels": len(self._logs)})

    def _make_room(self, drafts: Sequence[Draft], now: float) -> None:
        if len(drafts) == 1 and drafts[0].channel in self._logs:  # the common case, quickly
            return
        new = {d.channel for d in drafts if d.channel not in self._logs}
        if len(self._logs) + len(new) <= self._max_channels:
            return
        self._sweep(now)
        if len(self._logs) + len(new) > self._max_channels:
            raise BackplaneFull(
                f"the hub holds history for {len(self._logs)} channels; the limit "
                f"(max_channels) is {self._max_channels}"
            )

    def _expire_keys(self, now: float) -> None:
        keys = self._idempotency
        while keys:
            key, (expires, _) = next(iter(keys.items()))
            if expires > now:
                break
            del keys[key]

    def _sweep(self, now: float) -> None:
        cutoff = now - self._history_ttl
        for name in list(self._logs):
            log = self._logs[name]
            log.expire(cutoff)
            if not log.events:
                self._forgotten = max(self._forgotten, log.trimmed)
                del self._logs[name]
        self._expire_keys(now)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            self._sweep(time.time())
