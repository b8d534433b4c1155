"""Hub-wide limits of a hub of several workers, kept in one place: the engine, in the supervisor.

With ``workers`` > 1 the kernel spreads connections over the workers (``SO_REUSEPORT``), so a
limit counted by each worker would let one client have N times its share (a load test, or any
client that opens several connections). The supervisor runs the engine with every backplane
(``hub.supervisor``: with Redis or NATS only its coordination part), and the limits live here,
once for the hub. Each limit is kept where it is correct and cheap:

- **Counts** (``max_client_streams`` per address, ``max_subscribers``): a stream takes its seat
  here, one request when it opens (``seat``: an atomic check-and-take, since the engine runs each
  request in one step), and gives it back with a message that wants no answer when it ends
  (``unseat``). Nothing per event. Seats are counted per link: a worker that dies (its link
  ends) gives back exactly the seats it held (``drop``), and a late ``unseat`` on another link
  can never take a seat that link does not hold.
- **The subscribe rate** (``subscribe_rate`` per address): the bucket is here and ``seat``
  spends from it in the same request, so a stream costs one round trip for both.
- **Publish rates** (``publish_rate``, a token's own ``rate``): a round trip per publish would
  double a publish's cost on the memory engine and add one on Redis, so a worker *leases*
  tokens (``lease``): what the publish needs, and up to a twentieth of a second's worth more
  when the bucket holds them (``hub.shared_limits``), which it spends without asking until they
  run out or a second has passed. Every event spent was taken from the one bucket here, so the
  hub-wide rate holds; the unspent rest of a lease is lost when it expires, which only makes the
  limit stricter, by a twentieth of a second's worth per worker at most. Not ``rate / N`` per
  worker: a publisher on one keep-alive connection lands on one worker and would get a N-th of
  its rate.
- **Channels an address brought into being** (``max_client_channels``): the channels a stream
  asks for travel with its ``seat`` and ``unseat`` (only while the limit is on), counted per
  link; a channel is brought into being by the address whose stream opened it first on any
  worker, and released when its last stream on any worker ended. A worker counting its own
  would count a channel open on two workers twice, and joining a channel another worker has
  would count as making it.
- **Tickets** (``ticket_rate``, ``max_publisher_tickets``): one request per ticket issued
  (``ticket``), which then goes to the backplane anyway; tickets stay counted until their TTL
  even when the worker that issued them dies (they can still be spent).

Not here, and why: ``max_channels`` is each process's capacity (and the engine's history cap
with the memory backplane).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from hub.limits import TokenBuckets
from hub.ticket_quota import TicketQuota, TooManyTickets

if TYPE_CHECKING:
    from hub.config import Config

__all__ = ["COORDINATION", "HubLimits", "limit_methods", "served"]

#: What the engine serves when the backplane is Redis or NATS (the supervisor's coordination
#: part): the workers' reports for ``/metrics`` and ``/healthz``, and the limits.
COORDINATION = frozenset(
    {"hello", "report", "counts", "totals", "seat", "unseat", "lease", "ticket"}
)


class HubLimits:
    """The hub's counts and buckets; ``link`` is the asking worker's link (any hashable)."""

    def __init__(self, config: Config) -> None:
        self._subscribe = TokenBuckets(config.subscribe_rate, config.subscribe_burst)
        self._max_client = config.max_client_streams
        self._max_streams = config.max_subscribers
        self._streams: dict[str, int] = {}  # seats per client address, hub-wide
        self.seats = 0  # seats taken, hub-wide
        self._held: dict[object, dict[str, int]] = {}  # per link: its clients' seats
        self._max_made = config.max_client_channels
        self._open: dict[str, int] = {}  # channel -> streams on it, hub-wide (limit on)
        self._owner: dict[str, str] = {}  # channel -> the address that brought it into being
        self._made: dict[str, int] = {}  # address -> channels it brought into being, open
        self._joined: dict[object, dict[str, int]] = {}  # per link: its streams per channel
        self._leases: dict[tuple[str, float, int], TokenBuckets] = {}
        self._tickets = TicketQuota(config)

    def seat(self, link: object, client: str, channels: Sequence[str] = ()) -> list[Any] | None:
        """A stream of ``client`` on ``channels`` (sent while ``max_client_channels`` is on)
        opens: None (its seat taken), or ``[setting, wait]``."""
        wait = self._subscribe.take(client)
        if wait:
            return ["subscribe_rate", wait]
        count = self._streams.get(client, 0)
        if self._max_client and count >= self._max_client:
            return ["max_client_streams", 0.0]
        if self.seats >= self._max_streams:
            return ["max_subscribers", 0.0]
        new = [name for name in channels if name not in self._open]
        if new and self._max_made and self._made.get(client, 0) + len(new) > self._max_made:
            return ["max_client_channels", 0.0]
        for name in new:
            self._owner[name] = client
            self._made[client] = self._made.get(client, 0) + 1
        if channels:
            joined = self._joined.setdefault(link, {})
            for name in channels:
                self._open[name] = self._open.get(name, 0) + 1
                joined[name] = joined.get(name, 0) + 1
        self._streams[client] = count + 1
        self.seats += 1
        held = self._held.setdefault(link, {})
        held[client] = held.get(client, 0) + 1
        return None

    def unseat(self, link: object, client: str, channels: Sequence[str] = ()) -> None:
        """A stream of ``client`` ended: its seat back, if this link holds one."""
        held = self._held.get(link)
        if held is None or client not in held:
            return
        _take(held, client, 1)
        _take(self._streams, client, 1)
        self.seats -= 1
        joined = self._joined.get(link, {})
        for name in channels:
            if name in joined:
                _take(joined, name, 1)
                self._leave(name, 1)

    def drop(self, link: object) -> None:
        """A worker's link ended: every seat it held is given back, and its channels."""
        for client, count in self._held.pop(link, {}).items():
            _take(self._streams, client, count)
            self.seats -= count
        for name, count in self._joined.pop(link, {}).items():
            self._leave(name, count)

    def _leave(self, channel: str, count: int) -> None:
        """``count`` streams left ``channel``; after its last, its maker may make another."""
        _take(self._open, channel, count)
        if channel not in self._open:
            _take(self._made, self._owner.pop(channel, ""), 1)

    def held(self, link: object) -> int:
        return sum(self._held.get(link, {}).values())

    def lease(
        self, setting: str, key: str, cost: int, want: int, rate: float, burst: int
    ) -> list[Any]:
        """``[granted, wait]``: tokens of ``key``'s bucket of ``setting`` (the worker names the
        rate and burst: a token's own rate is in its entry of the settings)."""
        buckets = self._leases.get((setting, rate, burst))
        if buckets is None:
            buckets = self._leases[setting, rate, burst] = TokenBuckets(rate, burst)
        granted, wait = buckets.grant(key, cost, max(cost, want))
        return [granted, wait]

    def ticket(self, publisher: str, ttl: float, rate_key: str | None) -> list[Any] | None:
        """One ticket for ``publisher``: None, or ``[message, retry_after]`` (429)."""
        try:
            self._tickets.take(publisher, ttl, rate_key)
        except TooManyTickets as problem:
            return [str(problem), problem.retry_after]
        return None


def limit_methods(limits: HubLimits, asking: Callable[[], object]) -> dict[str, Callable[..., Any]]:
    """The engine's handlers of the limit requests; ``asking()`` is the link whose request runs."""
    return {
        "seat": lambda client, channels=(): limits.seat(asking(), client, channels),
        "unseat": lambda client, channels=(): limits.unseat(asking(), client, channels),
        "lease": limits.lease,
        "ticket": limits.ticket,
    }


def served(methods: dict[str, Callable[..., Any]], store: bool) -> dict[str, Callable[..., Any]]:
    """The engine's methods (``store``), or only its coordination part: with Redis or NATS the
    supervisor's engine holds no events (its empty memory backplane is never asked), so a
    request for one is an error rather than a second, silent store."""
    return methods if store else {k: v for k, v in methods.items() if k in COORDINATION}


def _take(counts: dict[str, int], key: str, count: int) -> None:
    left = counts.get(key, 0) - count
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)
