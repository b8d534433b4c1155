"""One channel's retained events in the memory backplane, bounded by count, age and bytes."""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from itertools import starmap
from operator import itemgetter

from hub.events import Event

__all__ = ["EVENT_OVERHEAD", "TAG_OVERHEAD", "Log", "cost", "position_of"]

#: What a retained event costs beyond its frame (the Event tuple, its fields, a list slot),
#: counted against max_history_bytes so that many tiny events are bounded too.
EVENT_OVERHEAD = 160
#: What each tag costs beyond its text: a ``str`` object's header (49 bytes) and its slot in the
#: tags tuple. Tags are kept beside the frame (``hub.events.stored_event`` splits them off), up
#: to 16 of 129 characters each: 2 KiB an event that a bound of frames alone would not see.
TAG_OVERHEAD = 57


def cost(event: tuple[int, str, bytes, float, tuple[str, ...]]) -> int:
    """What a retained event (an ``Event`` or its plain tuple) counts against
    ``max_history_bytes``: its frame, its tags, and their bookkeeping."""
    tags = event[4]
    if not tags:
        return len(event[2]) + EVENT_OVERHEAD
    return len(event[2]) + EVENT_OVERHEAD + sum(map(len, tags)) + TAG_OVERHEAD * len(tags)


class Log:
    """One channel's retained events, oldest first, as a list with a moving head.

    A list, not a deque, so a page can start with a bisect on positions instead of a scan; the
    dropped head is compacted away once it is half the list, which keeps trimming O(1) amortised.

    It holds plain tuples, not ``Event`` objects: the garbage collector stops tracking a tuple
    of ints, strings and bytes at its first pass, but never a NamedTuple's instance, so every
    retained ``Event`` (a million with the default bounds) would be scanned by every full
    collection, a pause that grows with the history. Events are made again when read.
    """

    __slots__ = ("bytes", "events", "head", "trimmed")

    def __init__(self) -> None:
        self.events: list[_Stored] = []
        self.head = 0  # events[:head] are dropped
        self.trimmed = 0  # the highest position dropped from this log (0: none)
        self.bytes = 0  # what the retained events cost (``cost``: frames, tags, bookkeeping)

    def __len__(self) -> int:
        return len(self.events) - self.head

    @property
    def oldest(self) -> Event | None:
        return Event(*self.events[self.head]) if self.head < len(self.events) else None

    @property
    def newest(self) -> Event | None:
        return Event(*self.events[-1]) if self.head < len(self.events) else None

    def append(self, event: Event, keep: int, cutoff: float) -> None:
        """Keep ``event``, then drop what is past ``keep`` events or older than ``cutoff``
        (one call per stored event: ``expire`` as well would be a second)."""
        events = self.events
        events.append(event[:])  # a plain tuple (see the class's docstring)
        # cost(), inlined for an event without tags: two calls a publish once the log is full
        self.bytes += len(event[2]) + EVENT_OVERHEAD if not event[4] else cost(event)
        head = self.head
        if len(events) - head > keep:  # a full log: every publish, once full
            dropped = events[head]  # _drop(head + 1), inlined
            self.bytes -= len(dropped[2]) + EVENT_OVERHEAD if not dropped[4] else cost(dropped)
            self.trimmed = dropped[0]
            self.head = head = head + 1
            if head > 64 and head * 2 > len(events):
                del events[:head]
                self.head = head = 0
        if head < len(events) and events[head][3] < cutoff:  # (history_size 0 keeps none)
            self._drop(bisect.bisect_left(events, cutoff, self.head, key=_published_at))

    def expire(self, cutoff: float) -> None:
        events, head = self.events, self.head
        if head < len(events) and events[head][3] < cutoff:
            self._drop(bisect.bisect_left(events, cutoff, head, key=_published_at))

    def drop_through(self, position: int) -> None:
        """Drop the retained events at or below ``position``."""
        end = bisect.bisect_right(self.events, position, self.head, key=_position)
        if end > self.head:
            self._drop(end)

    def _drop(self, end: int) -> None:
        """Drop events[head:end] (end > head)."""
        events, head = self.events, self.head
        self.bytes -= sum(map(cost, events[head:end]))
        self.trimmed = self.events[end - 1][0]
        self.head = end
        if end > 64 and end * 2 > len(self.events):
            del self.events[:end]
            self.head = 0

    def after(self, position: int | None) -> Iterator[Event]:
        """The retained events above ``position`` (None: all), without copying the log."""
        events = self.events
        start = self.head
        if position is not None:
            start = bisect.bisect_right(events, position, start, key=_position)
        return starmap(Event, map(events.__getitem__, range(start, len(events))))


#: A retained event: ``Event``'s fields in a plain tuple.
_Stored = tuple[int, str, bytes, float, tuple[str, ...]]
_position = itemgetter(0)
_published_at = itemgetter(3)


def position_of(event: Event) -> int:
    return event.position
