"""How many one-time tickets one publisher may have waiting, and how fast it may mint them.

A ticket store is shared by every publisher (the memory backplane holds at most
``MAX_TICKETS``; Redis and NATS hold whatever they are given). With no limit per publisher, one
scoped token minted 100,000 tickets in ten seconds and every other token, the admin's too, was
answered ``503 ... tickets are waiting to be spent`` for the ticket TTL. So each publisher (a
token; a client address for loopback publishers; an answer for the demo's ticket route) gets:

- ``ticket_rate`` tickets a second, in bursts of ``ticket_burst``: 429 + ``Retry-After``;
- at most ``max_publisher_tickets`` tickets not yet expired (spent or not: a spend may happen on
  another process, so this process counts what it issued until the ticket's TTL has passed):
  429 + ``Retry-After`` until the oldest one expires.

Counted per process; a worker of several (``workers``) asks the supervisor instead, where one
``TicketQuota`` counts for the whole hub (``claim``, ``hub.backplane.engine_limits``). Memory is
bounded: one heap of expiry times
per publisher, at most ``max_publisher_tickets`` long, and at most ``MAX_PUBLISHERS`` heaps.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Awaitable, Callable

from hub.config import Config
from hub.events import InvalidInput
from hub.limits import TokenBuckets

__all__ = ["MAX_PUBLISHERS", "TicketQuota", "TooManyTickets"]

#: Publishers tracked at most; past it, those whose tickets have all expired are forgotten.
MAX_PUBLISHERS = 4096


class TooManyTickets(InvalidInput):
    """429, with the seconds until another ticket may be issued (for ``Retry-After``)."""

    def __init__(self, message: str, wait: float) -> None:
        super().__init__(message, status=429)
        self.retry_after = max(1, math.ceil(wait))

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class TicketQuota:
    def __init__(self, config: Config) -> None:
        self._rate = TokenBuckets(config.ticket_rate, config.ticket_burst)
        self._config = config
        self._waiting: dict[str, list[float]] = {}  # publisher -> heap of expiry times
        #: a worker's: the hub's quota, in the supervisor (``hub.shared_limits.SharedLimits``'s
        #: ``ticket``, set at wiring, ``hub.app``)
        self.shared: Callable[[str, float, str | None], Awaitable[None]] | None = None

    async def claim(self, publisher: str, ttl: float, rate_key: str | None = None) -> None:
        """``take``, here or hub-wide (a worker of several)."""
        if self.shared is not None:
            await self.shared(publisher, ttl, rate_key)
        else:
            self.take(publisher, ttl, rate_key)

    def take(self, publisher: str, ttl: float, rate_key: str | None = None) -> None:
        """Count one ticket of ``ttl`` seconds for ``publisher`` (its rate is that of
        ``rate_key``, by default the publisher), or raise ``TooManyTickets``."""
        config = self._config
        now = time.monotonic()
        heap = self._waiting.get(publisher)
        if heap is not None:
            while heap and heap[0] <= now:
                heapq.heappop(heap)
        quota = config.max_publisher_tickets
        if quota and heap is not None and len(heap) >= quota:
            raise TooManyTickets(
                f"no ticket issued: {len(heap)} tickets of this publisher are still valid; the "
                f"limit (max_publisher_tickets) is {quota}",
                heap[0] - now,
            )
        wait = self._rate.take(rate_key or publisher)
        if wait:
            raise TooManyTickets(
                f"no ticket issued: too many tickets from this publisher; the limit (ticket_rate) "
                f"is {config.ticket_rate:g} a second, in bursts of {config.ticket_burst} "
                f"(ticket_burst); retry in {wait:.1f} s",
                wait,
            )
        if not quota:
            return
        if heap is None:
            if len(self._waiting) >= MAX_PUBLISHERS:
                self._forget(now)
            heap = self._waiting[publisher] = []
        heapq.heappush(heap, now + ttl)

    def _forget(self, now: float) -> None:
        """Drop publishers with nothing valid; if too few, those whose newest ticket is oldest,
        down to 3/4 of ``MAX_PUBLISHERS`` (memory stays bounded; a publisher forgotten early
        only gets a fresh count). Down to 3/4, as ``hub.limits.TokenBuckets``: one O(n) sweep
        per ``MAX_PUBLISHERS / 4`` new publishers, not one per new publisher once it is full
        (the demo's ticket route makes a publisher of any well-formed answer id)."""
        waiting = self._waiting
        newest = {key: max(heap, default=0.0) for key, heap in waiting.items()}
        for key in [k for k, last in newest.items() if last <= now]:
            del waiting[key], newest[key]
        excess = len(waiting) - MAX_PUBLISHERS * 3 // 4
        if excess > 0:
            for key in sorted(newest, key=newest.__getitem__)[:excess]:
                del waiting[key]

    def tracked(self) -> int:
        """How many publishers are remembered: what ``MAX_PUBLISHERS`` bounds."""
        return len(self._waiting)
