"""Redis backplane: live delivery. One reader per process waits on the notify stream and reads
the followed channels it names.

See ``hub.backplane.redis`` for why this delivers every event exactly once, in position order
across channels. The reader owns the cursors; ``follow`` only asks it to join channels, and it
sets their cursors itself between two reads, so every read covers every followed channel.
Following more channels costs a read nothing: only those with new events are read (the earlier
design read every followed stream on every event, which cost 7x at 1,000 channels).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.backoff import AbstractBackoff

from hub.backplane import Listener, redis_scripts
from hub.backplane.following import Following
from hub.backplane.lifecycle import retry_forever
from hub.backplane.redis_keys import UNAVAILABLE, Keys, Link, entry_event, position
from hub.backplane.tombstones import Tombstones
from hub.events import Event

__all__ = ["BLOCK_MS", "READ_COUNT", "Reader"]

log = logging.getLogger("hub.backplane")

#: How long one XREAD waits for new entries before it is issued again (ms).
BLOCK_MS = 5000
#: Entries read per stream per XREAD or XRANGE.
READ_COUNT = 1000

#: What one read found: per channel, its entries as (position, fields).
Read = list[tuple[str, list[tuple[int, dict[bytes, bytes]]]]]


class Reader:
    """The cursors of the followed channels and the task that reads them. ``tombstones``: the
    deletions met (or found at a join) are noted there, for ``Deletion.deleted``; ``closings``
    likewise the closes, for ``Closing.closed``."""

    def __init__(
        self,
        reader: aioredis.Redis,
        requests: aioredis.Redis,
        keys: Keys,
        link: Link,
        backoff: AbstractBackoff,
        wake_key: str,
        tombstones: Tombstones,
        closings: Tombstones,
    ) -> None:
        self._reader = reader  # a connection of its own: it blocks up to BLOCK_MS at a time
        self._requests = requests
        self._keys = keys
        self._link = link
        self._backoff = backoff
        self._wake_key = wake_key
        self._tombstones = tombstones
        self._closings = closings
        self.listener: Listener | None = None
        self._following = Following()
        self.cursors = self._following.cursors  # followed channel -> newest position delivered
        self._wake = self._following.wake
        self._notify, self._notify_trimmed = keys.notify()
        self._notify_name = self._notify.encode()
        # Every position at or below the notify cursor was delivered (followed channels) or is
        # of no concern here; set at the first join, moved by each read.
        self._notified = 0
        self._woken: bytes | str = "0-0"  # the newest wake entry seen
        self._behind = False  # read the followed streams themselves (``_sweep``) next
        self._recovering = False  # after a failure: look for gaps first

    async def follow(self, channels: Sequence[str]) -> int:
        """Have the reader join the channels it does not read yet; returns the frontier.

        The reader itself sets the new cursors, between two XREADs, so every XREAD covers every
        followed channel: that is what keeps deliveries in position order across channels.
        """
        waits, asked = self._following.ask(channels)
        if not waits:
            return 0
        if asked:
            self._wake.set()
            try:
                # A reader blocked in XREAD returns when its wake stream gets an entry.
                await self._requests.xadd(self._wake_key, {"w": "1"}, maxlen=1)
            except UNAVAILABLE as problem:
                raise self._link.unavailable("pool", problem) from None
        return await self._following.frontier(waits)

    def unfollow(self, channel: str) -> None:
        self._following.unfollow(channel)

    def cancel_joins(self) -> None:
        self._following.cancel()

    async def _join(self) -> None:
        """Set the cursors of newly followed channels to their newest entries (reader only)."""
        channels = self._following.joining()
        async with self._reader.pipeline(transaction=True) as pipe:
            # One transaction: the newest entries and the sequence are from the same instant,
            # so "everything after the frontier" is exactly "everything after the cursors".
            _queued: list[Any] = [pipe.xrevrange(self._keys.stream(c), count=1) for c in channels]
            _queued += [pipe.pttl(self._keys.tombstone(c)) for c in channels]
            _queued += [pipe.get(self._keys.tombstone(c)) for c in channels]
            _queued.append(pipe.get(self._keys.key("seq")))
            *replies, sequence = await pipe.execute()
        frontier = int(sequence or 0)
        if not self.cursors:  # not reading meanwhile: the notify cursor starts here again
            self._notified = frontier
        count = len(channels)
        newest, tombstones = replies[:count], replies[count : 2 * count]
        now = time.time()
        for channel, left_ms, mark in zip(channels, tombstones, replies[2 * count :], strict=True):
            if not mark:  # none (any more): a Durable Stream created again lifted it
                self._tombstones.lift(channel)
                self._closings.lift(channel)
            elif left_ms > 0 or left_ms == -1:  # deleted (or closed) before this join: told now
                ends = self._closings if mark.startswith(b"c") else self._tombstones
                # -1: a Durable Stream's close, with no end of its own
                ends.mark_until(channel, now + left_ms / 1000 if left_ms > 0 else math.inf)
        for channel, entries in zip(channels, newest, strict=True):
            self._following.joined(channel, position(entries[0][0]) if entries else 0, frontier)

    async def read_forever(self) -> None:
        """Read until cancelled. Any failure, a lost connection or an error reply alike, is
        logged, marks the link lost and is retried after a backoff: the cursors are kept, so
        reading resumes exactly where it stopped once Redis answers normally again."""
        await retry_forever(
            self._round,
            name="Redis reader",
            link=self._link,
            witness="reader",
            errors=UNAVAILABLE,
            backoff=self._backoff.compute,
            failed=self._failed,
        )

    def _failed(self, _: BaseException) -> None:
        self._recovering = True

    async def _round(self) -> None:
        self._wake.clear()
        if self._following.asked:
            await self._join()
        if not self.cursors:
            self._link.regained("reader")
            await self._wake.wait()
            return
        if self._recovering:
            await self._check_gaps()
            self._recovering = False
            self._behind = True  # the notify stream may have expired meanwhile
        if self._behind:
            self._behind = await self._sweep()
        else:
            await self._read()

    async def _read(self) -> None:
        """Wait for notify entries past the notify cursor, then read the followed channels they
        name, up to the newest of them: two round trips however many channels are followed."""
        streams: dict[Any, Any] = {self._notify: f"{self._notified}-0", self._wake_key: self._woken}
        reply: Any = await self._reader.xread(streams, count=READ_COUNT, block=BLOCK_MS)
        notes: list[Any] = []
        for key, entries in reply or ():
            if key == self._notify_name:
                notes = entries
            elif entries:  # a follow woke this wait
                self._woken = entries[-1][0]
        if not notes:
            return
        newest = position(notes[-1][0])
        wanted: dict[str, int] = {}
        cursors = self.cursors
        for _, fields in notes:
            names = fields.get(b"c", b"").decode()
            if names == "*":  # a batch over many channels: any followed one may have events
                wanted = dict(cursors)
                break
            for name in names.split(" "):
                if name in cursors and name not in wanted:
                    wanted[name] = cursors[name]
        # A full batch may mean the reader is far behind, and then the notify stream may have
        # been trimmed past its cursor. A shorter one reached the end of the stream, and one
        # shorter than NOTIFY_LENGTH too left older entries in it (a trim keeps at least that
        # many): nothing after the cursor went.
        check = len(notes) >= min(READ_COUNT, redis_scripts.NOTIFY_LENGTH)
        if not wanted and not check:
            self._notified = newest
            return
        async with self._reader.pipeline(transaction=False) as pipe:
            _queued: list[Any] = [
                pipe.xrange(self._keys.stream(channel), f"{cursor + 1}", f"{newest}", READ_COUNT)
                for channel, cursor in wanted.items()
            ]
            if check:
                _queued.append(pipe.get(self._notify_trimmed))
            replies = await pipe.execute()
        if check and int(replies.pop() or 0) > self._notified + 1:
            self._behind = True  # some notify entries after the cursor are gone: sweep
            return
        read, cut = _parsed(zip(wanted, replies, strict=True))
        self._dispatch(read, cut)
        self._notified = newest if cut is None else cut

    async def _sweep(self) -> bool:
        """Read every followed channel's stream from its cursor, as one snapshot with the
        sequence: after an outage, or when the notify stream lost entries the reader had not
        read. Returns whether a channel was cut short, so that another sweep must follow."""
        channels = list(self.cursors)
        streams: dict[Any, Any] = {self._keys.stream(c): f"{self.cursors[c]}-0" for c in channels}
        async with self._reader.pipeline(transaction=True) as pipe:
            _queued = [pipe.xread(streams, count=READ_COUNT), pipe.get(self._keys.key("seq"))]
            reply, sequence = await pipe.execute()
        channel_of = {self._keys.stream(c).encode(): c for c in channels}
        found = ((channel_of.get(key), entries) for key, entries in reply or ())
        read, cut = _parsed((c, entries) for c, entries in found if c is not None)
        self._dispatch(read, cut)
        self._notified = int(sequence or 0) if cut is None else cut
        return cut is not None

    def _dispatch(self, read: Read, cut: int | None) -> None:
        """Deliver what was read, merged by position, up to the cut, and move the cursors."""
        events: list[Event] = []
        deletions: list[tuple[int, str, dict[bytes, bytes]]] = []  # marker entries (_met)
        for channel, parsed in read:
            cursor = self.cursors.get(channel)
            if cursor is None:  # unfollowed meanwhile
                continue
            for at, fields in parsed:
                if at <= cursor:  # re-followed with a newer cursor meanwhile
                    continue
                if cut is not None and at > cut:
                    break
                if b"b" not in fields:  # a deletion's, a close's or a revival's marker
                    deletions.append((at, channel, fields))
                else:
                    events.append(entry_event(channel, at, fields))
                cursor = at
            self.cursors[channel] = cursor
        if self.listener is None:
            return
        events.sort(key=lambda event: event.position)
        deletions.sort(key=lambda marker: marker[0])  # in position order with the events
        for at, channel, fields in deletions:
            before = [e for e in events if e.position < at]
            if before:
                self.listener.deliver(before)
                events = events[len(before) :]
            self._met(self.listener, channel, fields)
        if events:
            self.listener.deliver(events)

    def _met(self, listener: Listener, channel: str, fields: dict[bytes, bytes]) -> None:
        """A marker entry read: note it and tell the listener (``redis_lua.MARKS``)."""
        if b"z" in fields:  # closed ("s": a Durable Stream's close, as long as the stream)
            if fields[b"z"] == b"s":
                self._closings.mark_until(channel, math.inf)
            else:
                self._closings.mark(channel, time.time())
            listener.closed(channel)
        elif b"x" in fields:  # deleted: a Durable Stream's close ends with it
            self._tombstones.mark(channel, time.time())
            self._closings.lift(channel)
            listener.deleted(channel)
        else:  # revived: a Durable Stream created on the deleted or closed channel
            self._tombstones.lift(channel)
            self._closings.lift(channel)

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


def _parsed(replies: Iterable[tuple[str, list[Any]]]) -> tuple[Read, int | None]:
    """Entries per channel with their positions, and the cut: when a channel returned a full
    COUNT, later entries of the others must wait for the next read (the lowest such end)."""
    read: Read = []
    cut: int | None = None
    for channel, entries in replies:
        if not entries:
            continue
        parsed = [(position(entry_id), fields) for entry_id, fields in entries]
        if len(entries) >= READ_COUNT:
            cut = parsed[-1][0] if cut is None else min(cut, parsed[-1][0])
        read.append((channel, parsed))
    return read, cut
