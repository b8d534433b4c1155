"""The deleted channels a process knows of, until their tombstones end (``time.time()``).

Shared by the Redis and NATS backplanes (``Deletion.deleted`` answers from it, and the NATS
publisher refuses a known deleted channel without a round trip). Filled by the reader (a
deletion met live, or found at a join), by a delete on this process and, on NATS, by the
publisher (a channel's last message read after a refused publish). Bounded: ended tombstones
are swept, at most once a second, by the lookups. Empty, it costs a lookup one test.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

__all__ = ["Tombstones"]


class Tombstones:
    """``ttl``: how long a tombstone stands after it was stored (``history_ttl``)."""

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        #: channel -> when its tombstone ends; may hold ended ones until the next sweep (a
        #: plain attribute: the memory backplane tests it on every publish, without a call)
        self.standing: dict[str, float] = {}
        self._sweep_at = 0.0

    def __bool__(self) -> bool:
        return bool(self.standing)

    def mark(self, channel: str, stored: float) -> bool:
        """A tombstone stored at ``stored`` (seconds since the epoch): whether it stands."""
        return self.mark_until(channel, stored + self._ttl)

    def mark_until(self, channel: str, until: float) -> bool:
        """A tombstone that ends at ``until``: whether it stands."""
        if until <= time.time():
            return False
        self.standing[channel] = max(until, self.standing.get(channel, 0.0))
        return True

    def among(self, channels: Sequence[str]) -> list[str]:
        """Those of ``channels`` whose tombstone stands."""
        if not self.standing:
            return []
        now = time.time()
        if now >= self._sweep_at:  # at most once a second: this runs for every subscribe
            self.standing = {name: end for name, end in self.standing.items() if end > now}
            self._sweep_at = now + 1.0
        return [name for name in channels if self.standing.get(name, 0.0) > now]

    def ends(self, channels: Sequence[str]) -> dict[str, float]:
        """When the standing tombstones of ``channels`` end (for a proxy that keeps a copy)."""
        return {name: self.standing[name] for name in self.among(channels)}

    def lift(self, channel: str) -> None:
        """End the channel's mark now: a Durable Stream created again on a deleted channel, or
        a closed stream deleted (its close outlives ``history_ttl``; ``hub.backplane.streams``)."""
        self.standing.pop(channel, None)
