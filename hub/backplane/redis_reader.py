"""Redis backplane: live delivery. One reader per process follows channels with one XREAD.

See ``hub.backplane.redis`` for why this delivers every event exactly once, in position order
across channels. The reader owns the cursors; ``follow`` only asks it to join channels, and it
sets their cursors itself between two reads, so every read covers every followed channel.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.backoff import AbstractBackoff

from hub.backplane import Listener
from hub.backplane.redis_keys import UNAVAILABLE, Keys, Link, describe, entry_event, position
from hub.events import Event

__all__ = ["BLOCK_MS", "READ_COUNT", "Reader"]

log = logging.getLogger("hub.backplane")

#: How long one XREAD waits for new entries before it is issued again (ms).
BLOCK_MS = 5000
#: Entries read per stream per XREAD.
READ_COUNT = 1000


class Reader:
    """The cursors of the followed channels and the task that reads them."""

    def __init__(
        self,
        reader: aioredis.Redis,
        requests: aioredis.Redis,
        keys: Keys,
        link: Link,
        backoff: AbstractBackoff,
        wake_key: str,
    ) -> None:
        self._reader = reader  # a connection of its own: it blocks up to BLOCK_MS at a time
        self._requests = requests
        self._keys = keys
        self._link = link
        self._backoff = backoff
        self._wake_key = wake_key
        self.listener: Listener | None = None
        self.cursors: dict[str, int] = {}  # followed channel -> newest position delivered
        # deleted channels this process knows of -> when their tombstone ends (time.time())
        self.gone: dict[str, float] = {}
        # channels waiting for the reader to join them -> their followers' frontier
        self._joining: dict[str, asyncio.Future[int]] = {}
        self._wake = asyncio.Event()
        self.tombstone_seconds = 0.0  # history_ttl, set by the backplane

    async def follow(self, channels: Sequence[str]) -> int:
        """Have the reader join the channels it does not read yet; returns the frontier.

        The reader itself sets the new cursors, between two XREADs, so every XREAD covers every
        followed channel: that is what keeps deliveries in position order across channels.
        """
        loop = asyncio.get_running_loop()
        waits = []
        asked = False  # whether this call asks for a join nobody asked for yet
        for channel in channels:
            if channel in self.cursors:
                continue
            joining = self._joining.get(channel)
            if joining is None:
                joining = self._joining[channel] = loop.create_future()
                asked = True
            waits.append(joining)
        if not waits:
            return 0
        if asked:
            self._wake.set()
            try:
                # A reader blocked in XREAD returns when its wake stream gets an entry.
                await self._requests.xadd(self._wake_key, {"w": "1"}, maxlen=1)
            except UNAVAILABLE as problem:
                raise self._link.unavailable("pool", problem) from None
        # Shielded: one subscriber leaving must not cancel a join others wait for.
        frontiers = [await asyncio.shield(joining) for joining in waits]
        return max(frontiers)

    def unfollow(self, channel: str) -> None:
        self.cursors.pop(channel, None)
        joining = self._joining.pop(channel, None)
        if joining is not None and not joining.done():
            joining.cancel()

    def cancel_joins(self) -> None:
        for joining in self._joining.values():
            joining.cancel()

    async def _join(self) -> None:
        """Set the cursors of newly followed channels to their newest entries (reader only)."""
        channels = list(self._joining)
        async with self._reader.pipeline(transaction=True) as pipe:
            # One transaction: the newest entries and the sequence are from the same instant,
            # so "everything after the frontier" is exactly "everything after the cursors".
            _queued: list[Any] = [pipe.xrevrange(self._keys.stream(c), count=1) for c in channels]
            _queued += [pipe.pttl(self._keys.tombstone(c)) for c in channels]
            _queued.append(pipe.get(self._keys.key("seq")))
            *replies, sequence = await pipe.execute()
        frontier = int(sequence or 0)
        newest, tombstones = replies[: len(channels)], replies[len(channels) :]
        now = time.time()
        for channel, left_ms in zip(channels, tombstones, strict=True):
            if left_ms > 0:  # deleted before this join: the subscribe is told at once
                self.gone[channel] = now + left_ms / 1000
        for channel, entries in zip(channels, newest, strict=True):
            joining = self._joining.pop(channel, None)
            if joining is None:  # unfollowed meanwhile: nobody waits
                continue
            self.cursors[channel] = position(entries[0][0]) if entries else 0
            if not joining.done():
                joining.set_result(frontier)

    async def read_forever(self) -> None:
        """Read until cancelled. Any failure, a lost connection or an error reply alike, is
        logged, marks the link lost and is retried after a backoff: the cursors are kept, so
        reading resumes exactly where it stopped once Redis answers normally again."""
        failures = 0
        recovering = False
        while True:
            self._wake.clear()
            try:
                if self._joining:
                    await self._join()
                if not self.cursors:
                    self._link.regained("reader")
                    await self._wake.wait()
                    continue
                if recovering:
                    await self._check_gaps()
                    recovering = False
                streams: dict[Any, Any] = {
                    self._keys.stream(c): f"{p}-0" for c, p in self.cursors.items()
                }
                # Non-blocking first: one XREAD is an atomic snapshot of every stream. A blocked
                # XREAD is only a wait: when new entries wake it, Redis (before 7.2) answers with
                # the stream that woke it alone, which is no snapshot of the others.
                reply: Any = await self._reader.xread(streams, count=READ_COUNT)
                if not reply:
                    self._link.regained("reader")
                    streams[self._wake_key] = "$"
                    await self._reader.xread(streams, count=1, block=BLOCK_MS)
                    continue
            except UNAVAILABLE as problem:
                if failures == 0:
                    log.warning("Redis reader: %s; retrying", describe(problem))
                self._link.lost("reader", problem)
                failures += 1
                recovering = True
                await asyncio.sleep(self._backoff.compute(failures))
                continue
            failures = 0
            self._link.regained("reader")
            self.dispatch(reply)

    def dispatch(self, reply: list[Any]) -> None:
        channel_of = {self._keys.stream(c): c for c in self.cursors}
        read: list[tuple[str, list[tuple[int, dict[bytes, bytes]]]]] = []
        cut: int | None = None
        for key, entries in reply:
            channel = channel_of.get(key.decode())
            if channel is None or not entries:  # the wake stream, or unfollowed meanwhile
                continue
            parsed = [(position(entry_id), fields) for entry_id, fields in entries]
            if len(entries) >= READ_COUNT:  # cut short: later entries of others must wait
                cut = parsed[-1][0] if cut is None else min(cut, parsed[-1][0])
            read.append((channel, parsed))
        events: list[Event] = []
        deletions: list[tuple[int, str]] = []  # a deletion's marker entry: (position, channel)
        for channel, parsed in read:
            cursor = self.cursors.get(channel)
            if cursor is None:
                continue
            for at, fields in parsed:
                if at <= cursor:  # re-followed with a newer cursor meanwhile
                    continue
                if cut is not None and at > cut:
                    break
                if b"x" in fields:
                    deletions.append((at, channel))
                else:
                    events.append(entry_event(channel, at, fields))
                cursor = at
            self.cursors[channel] = cursor
        if self.listener is None:
            return
        events.sort(key=lambda event: event.position)
        for at, channel in sorted(deletions):  # in position order with the events around them
            before = [e for e in events if e.position < at]
            if before:
                self.listener.deliver(before)
                events = events[len(before) :]
            self.gone[channel] = time.time() + self.tombstone_seconds
            self.listener.deleted(channel)
        if events:
            self.listener.deliver(events)

    async def _check_gaps(self) -> None:
        """After an outage: channels whose unread entries were trimmed meanwhile lose order."""
        channels = list(self.cursors)
        if not channels:
            return
        markers = await self._reader.mget([self._keys.marker(c) for c in channels])
        for channel, marker in zip(channels, markers, strict=True):
            if int(marker or 0) > self.cursors.get(channel, 0) and self.listener is not None:
                log.warning("history of %s was trimmed while Redis was away", channel)
                self.listener.lost(channel)
