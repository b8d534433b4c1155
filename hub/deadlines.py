"""Streams that must end by a time: a grant's expiry (issue 20, hole 2), for all of them one
heap and one timer.

A private stream opened with a grant valid until ``exp`` ends at ``exp`` + leeway with a clean
end of its response, as Mercure does: the browser reconnects, with a fresh grant or ticket, and
resumes with ``Last-Event-ID``. Streams without a deadline cost nothing here; those with one
cost a heap entry, and the hub one timer in all (the earliest), not one per stream: a timer
handle held per subscriber is memory and an event-loop heap entry per subscriber.

A stream that ends earlier stays in the heap until its time or until enough have ended that the
heap is rebuilt without them (``discard``: at most half of it is stale), so what it holds is
bounded by the streams that carry a deadline, never by those that came and went.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time

from hub.stream import Stream

__all__ = ["Deadlines"]


class Deadlines:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Stream]] = []
        self._order = itertools.count()  # ties never compare streams
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0  # when the timer fires (wall clock), if there is one
        self._stale = 0

    def add(self, at: float, stream: Stream) -> None:
        """End ``stream`` at ``at`` (``time.time()`` seconds)."""
        heapq.heappush(self._heap, (at, next(self._order), stream))
        if self._timer is None or at < self._due:
            self._arm()

    def discard(self) -> None:
        """A stream that was added has ended: rebuild the heap once half of it is stale."""
        self._stale += 1
        if self._stale * 2 > len(self._heap):
            self._heap = [entry for entry in self._heap if not entry[2].is_closed()]
            heapq.heapify(self._heap)
            self._stale = 0

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self) -> None:
        self.close()
        if not self._heap:
            return
        self._due = self._heap[0][0]
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(loop.time() + max(0.0, self._due - time.time()), self._fire)

    def _fire(self) -> None:
        self._timer = None
        now = time.time()
        heap = self._heap
        while heap and heap[0][0] <= now:
            stream = heapq.heappop(heap)[2]
            stream.end()  # its owner, awaiting ``done``, forgets it and ends the response
        self._arm()
