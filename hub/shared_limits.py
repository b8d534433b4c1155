"""A worker's half of the hub-wide limits: seats, leases and tickets asked of the supervisor.

With ``workers`` > 1 every limit per client and ``max_subscribers`` is kept once for the hub, in
the engine (``hub.backplane.engine_limits`` says what is kept how, and why). This is what a
worker sends it, over the link it already has to the engine (with Redis or NATS, a link to the
engine's coordination part: ``hub.app``):

- ``seat`` when a stream opens (one request: the subscribe rate, the address's streams and the
  hub's), ``unseat`` when it ends (no answer awaited);
- ``lease`` when a publish finds too few leased tokens here: the publish's cost, and up to
  ``LEASE_SECONDS`` of the rate more, spent here without a request until they run out or
  ``LEASE_TTL`` passed; so a publisher at its rate costs a request per twentieth of a second,
  not one per publish;
- ``ticket`` per ticket issued.

While the link is down the supervisor is gone and this worker is about to end with it
(``hub.worker.die_with_supervisor``): nothing is refused for that (a stream or a publish then
fails on its own if the backplane was the engine).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from hub.backplane import BackplaneUnavailable
from hub.backplane.engine_link import EngineLink
from hub.ticket_quota import TooManyTickets

__all__ = ["LEASE_SECONDS", "LEASE_TTL", "Coordinated", "SharedLimits"]

#: Seconds of a rate a lease asks for beyond what the publish needs.
LEASE_SECONDS = 0.05
#: Seconds a leased token may wait here to be spent (then it is lost: stricter, never looser).
LEASE_TTL = 1.0
#: Leases kept at most (one per publisher and limit that published within ``LEASE_TTL``).
MAX_LEASES = 16384


@runtime_checkable
class Coordinated(Protocol):
    """What holds a worker's link to the supervisor (``hub.backplane.engine_client``'s
    ``EngineBackplane``, as the backplane or as the coordinator of a worker on Redis or NATS)."""

    @property
    def coordinator_link(self) -> EngineLink | None: ...


class SharedLimits:
    def __init__(self, holder: Coordinated) -> None:
        self._holder = holder
        self._leases: dict[tuple[str, str], tuple[int, float]] = {}  # -> (tokens, until)

    def _link(self) -> EngineLink | None:
        link = self._holder.coordinator_link
        return link if link is not None and link.up else None

    async def seat(self, client: str, channels: Sequence[str]) -> tuple[str, float] | None:
        """A stream of ``client`` takes its seat (on ``channels``: for ``max_client_channels``,
        empty while it is off): None, or (the setting that refused, the seconds to wait)."""
        link = self._link()
        if link is None:
            return None
        try:
            refused = await link.call("seat", client, channels)
        except BackplaneUnavailable:
            return None
        return None if refused is None else (str(refused[0]), float(refused[1]))

    def unseat(self, client: str, channels: Sequence[str]) -> None:
        link = self._link()
        if link is not None:
            link.tell("unseat", client, channels)

    async def lease(self, setting: str, key: str, cost: int, rate: float, burst: int) -> float:
        """Spend ``cost`` of ``key``'s rate (``setting``): 0.0, or the seconds to wait."""
        now = time.monotonic()
        tokens, until = self._leases.get((setting, key), (0, 0.0))
        if until > now and tokens >= cost:
            self._leases[setting, key] = (tokens - cost, until)
            return 0.0
        link = self._link()
        if link is None:
            return 0.0
        want = max(cost, min(max(1, burst // 4), math.ceil(rate * LEASE_SECONDS)))
        try:
            granted, wait = await link.call("lease", setting, key, cost, want, rate, burst)
        except BackplaneUnavailable:
            return 0.0
        if wait:
            return float(wait)
        now = time.monotonic()
        tokens, until = self._leases.pop((setting, key), (0, 0.0))  # re-read: others awaited
        left = (tokens if until > now else 0) + int(granted) - cost
        if len(self._leases) >= MAX_LEASES:
            self._expire(now)
        self._leases[setting, key] = (left, now + LEASE_TTL)
        return 0.0

    def _expire(self, now: float) -> None:
        """Forget expired leases; if too few, the oldest half (their tokens are lost)."""
        for key in [k for k, (_, until) in self._leases.items() if until <= now]:
            del self._leases[key]
        if len(self._leases) >= MAX_LEASES:
            for key in list(self._leases)[: MAX_LEASES // 2]:
                del self._leases[key]

    async def ticket(self, publisher: str, ttl: float, rate_key: str | None) -> None:
        """Count one ticket of ``publisher`` hub-wide, or raise ``TooManyTickets``."""
        link = self._link()
        if link is None:
            return
        try:
            refused = await link.call("ticket", publisher, ttl, rate_key)
        except BackplaneUnavailable:
            return
        if refused is not None:
            raise TooManyTickets(str(refused[0]), float(refused[1]))
