"""The backplane: where event positions are assigned, history is kept and live events come from.

The hub deals with sockets; the backplane deals only with channels and events. Two
implementations share this interface: ``MemoryBackplane`` (one process, the default) and
``RedisBackplane`` (several processes or machines). Because the backplane assigns ids and keeps
history, a ``Last-Event-ID`` issued by one hub process is valid on every other one.

Contract every implementation keeps (tests/test_backplane_contract.py runs against each):

- ``publish`` stores the drafts, in order, with positions from one sequence that increases across
  all channels, and returns only once they are stored; it raises ``BackplaneUnavailable`` when it
  cannot tell whether they were, so the hub never acknowledges an event that may be lost.
- the listener receives every stored event of every followed channel exactly once, in position
  order across channels, whichever process published it.
- ``history`` answers from one consistent snapshot of all the channels asked for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from hub.events import Draft, Event

__all__ = [
    "CONNECTIONS",
    "Backplane",
    "BackplaneFull",
    "BackplaneUnavailable",
    "History",
    "Listener",
    "Published",
    "Reset",
]


class Listener(Protocol):
    """What the backplane calls back into (the hub); called on the event loop, never blocking."""

    def deliver(self, events: Sequence[Event]) -> None:
        """Live events of followed channels, in position order across channels."""

    def lost(self, channel: str) -> None:
        """Events of this channel can no longer be delivered live in order (e.g. trimmed while
        this process was cut off from the backplane): end its streams so clients resume."""

    def local_counts(self) -> Mapping[str, int]:
        """Subscribers of this process per channel, and its open streams under ``CONNECTIONS``."""


class BackplaneUnavailable(Exception):
    """The backplane cannot store or read right now; the hub answers 503 and nothing is lost."""


class BackplaneFull(Exception):
    """Storing this would pass a configured limit (e.g. ``max_channels``)."""


#: In ``remote_counts``: open streams on other processes (a space is never in a channel name).
CONNECTIONS = " connections"


@dataclass(frozen=True, slots=True)
class Reset:
    """Why a resume could not be exact; sent to the client as an ``event: reset`` frame."""

    reason: str  # "unknown-id": not an id of ours; "expired": history no longer reaches back
    oldest_id: str | None  # the oldest id still retained for the channels asked for


@dataclass(frozen=True, slots=True)
class History:
    events: list[Event]
    reset: Reset | None = None


@dataclass(frozen=True, slots=True)
class Published:
    """The ids of a publish; ``replayed`` when an idempotency key had already published them."""

    ids: list[str]
    replayed: bool = False


@dataclass(slots=True)
class BackplaneState:
    """For /healthz and /readyz."""

    kind: str
    connected: bool = True
    detail: dict[str, Any] = field(default_factory=dict)


class Backplane(Protocol):
    async def start(self, listener: Listener) -> None:
        """Begin delivering live events of followed channels to ``listener``."""

    async def close(self) -> None:
        """Stop reading and release connections; idempotent."""

    async def publish(self, drafts: Sequence[Draft], idempotency_key: str | None) -> Published:
        """Store ``drafts`` atomically (all or none) and return their ids."""

    async def history(self, channels: Sequence[str], after: int | None) -> History:
        """Retained events of ``channels`` after position ``after`` (None: all), by position."""

    async def follow(self, channels: Sequence[str]) -> int:
        """Return once the live events of ``channels`` are sure to reach the listener.

        Returns a frontier position: every event of these channels above it will be delivered,
        in order; events at or below it may have come before the channels were followed and
        are not delivered to a subscriber that starts now (0: no such bound). The hub calls it
        for each new subscriber before answering, so an event published after a client sees
        the response headers is never missed. Cheap for channels already followed.
        """

    def unfollow(self, channel: str) -> None:
        """Stop delivering this channel's events: its last local subscriber left."""

    async def channels(self) -> dict[str, str]:
        """Channels with retained history, mapped to their newest event id."""

    def remote_counts(self) -> Mapping[str, int]:
        """Subscribers per channel on the other hub processes (empty when there are none).

        Refreshed every few seconds, so it may be that old; key ``CONNECTIONS`` holds the number
        of their open streams.
        """

    def state(self) -> BackplaneState: ...
