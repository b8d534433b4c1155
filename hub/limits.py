"""Limits per client: token buckets for rates, counts for per-address caps; all in memory, per
process, and bounded in memory whatever the number of clients.

- ``TokenBuckets``: ``rate`` tokens a second, at most ``burst`` saved up, one bucket per key (a
  publish token or a client address). ``take`` is a dict lookup and some arithmetic: it runs on
  every publish. A request bigger than the burst (a batch) passes when the bucket is full and
  leaves it in debt, so a batch of ``max_batch`` events is never refused for good. A bucket that
  has filled up again is the same as no bucket, so buckets are evicted when there are
  ``MAX_BUCKETS``: full ones first, then the oldest, never more than that many kept.
- ``ClientCounts``: open streams per client address and channels each address brought into
  being (still open), so that one address cannot take every place under ``max_subscribers``
  and ``max_channels``. An entry exists only while its count is above zero.
"""

from __future__ import annotations

import time

__all__ = ["MAX_BUCKETS", "ClientCounts", "TokenBuckets"]

#: Buckets kept at most per limit (~100 bytes each); past it, full then oldest are evicted.
MAX_BUCKETS = 16384


class TokenBuckets:
    __slots__ = ("_buckets", "_burst", "_rate")

    def __init__(self, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when)

    @property
    def enabled(self) -> bool:
        return self._rate > 0

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def burst(self) -> int:
        return int(self._burst)

    def take(self, key: str, cost: int = 1) -> float:
        """Spend ``cost`` tokens of ``key``'s bucket: 0.0 if allowed, else seconds to wait."""
        if self._rate <= 0:
            return 0.0
        now = time.monotonic()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_BUCKETS:
                self._evict(now)
            tokens = self._burst
        else:
            tokens = min(self._burst, bucket[0] + (now - bucket[1]) * self._rate)
        need = cost if cost < self._burst else self._burst
        if tokens < need:
            self._buckets[key] = (tokens, now)
            return (need - tokens) / self._rate
        self._buckets[key] = (tokens - cost, now)
        return 0.0

    def grant(self, key: str, cost: int, want: int) -> tuple[int, float]:
        """``take`` for a lease (``hub.backplane.engine_limits``): ``cost`` tokens as ``take``
        spends them, and up to ``want`` in all when the bucket holds them, so a worker spends
        the rest without asking again; (granted, 0.0), or (0, seconds to wait) with nothing
        taken."""
        if self._rate <= 0:
            return want, 0.0
        wait = self.take(key, cost)
        if wait:
            return 0, wait
        tokens, when = self._buckets[key]
        extra = min(want - cost, int(tokens))
        if extra <= 0:
            return cost, 0.0
        self._buckets[key] = (tokens - extra, when)
        return cost + extra, 0.0

    def __len__(self) -> int:
        return len(self._buckets)

    def _evict(self, now: float) -> None:
        """Forget full buckets; if that is not enough, the oldest, down to 3/4 of the maximum
        (so a sweep, O(n), happens at most once per MAX_BUCKETS / 4 new keys)."""
        rate, burst = self._rate, self._burst
        buckets = self._buckets
        for key, (tokens, when) in list(buckets.items()):
            if tokens + (now - when) * rate >= burst:
                del buckets[key]
        excess = len(buckets) - MAX_BUCKETS * 3 // 4
        if excess > 0:
            for key in list(buckets)[:excess]:  # dicts keep insertion order: oldest first
                del buckets[key]


class ClientCounts:
    """Open streams and channels brought into being, per client address; 0 caps: off."""

    __slots__ = ("_channels", "_max_channels", "_max_streams", "_streams")

    def __init__(self, max_streams: int, max_channels: int) -> None:
        self._max_streams = max_streams
        self._max_channels = max_channels
        self._streams: dict[str, int] = {}
        self._channels: dict[str, int] = {}

    def open_stream(self, client: str) -> bool:
        """Count a new stream of ``client``; False (and nothing counted) when at its cap."""
        count = self._streams.get(client, 0)
        if self._max_streams and count >= self._max_streams:
            return False
        self._streams[client] = count + 1
        return True

    def close_stream(self, client: str) -> None:
        _decrement(self._streams, client)

    def count_channels_elsewhere(self) -> None:
        """A worker of several: ``max_client_channels`` is counted hub-wide (``hub.admission``),
        so the roster's check here is off."""
        self._max_channels = 0

    def may_create(self, client: str, new: int) -> bool:
        """Whether ``client`` may bring ``new`` more channels into being."""
        if not self._max_channels:
            return True
        return self._channels.get(client, 0) + new <= self._max_channels

    def created(self, client: str) -> None:
        self._channels[client] = self._channels.get(client, 0) + 1

    def released(self, client: str) -> None:
        """A channel ``client`` brought into being has closed (its last subscriber left)."""
        _decrement(self._channels, client)


def _decrement(counts: dict[str, int], key: str) -> None:
    count = counts.get(key, 0) - 1
    if count > 0:
        counts[key] = count
    else:
        counts.pop(key, None)
