"""The backplane: where event positions are assigned, history is kept and live events come from.

The hub deals with streams and sockets; a backplane deals only in channels and events.
Because it assigns ids and keeps history, a ``Last-Event-ID`` issued by one hub process is valid
on every other one. ``open_backplane`` picks the implementation from the URL scheme of the
``backplane`` setting (``hub.backplane.registry``): a new backplane is its module (or a few, one
job each), a line in ``SCHEMES`` and, if it has settings, its section in ``SECTIONS``
(``hub.backplane.settings``). The Redis and NATS backplanes share their plumbing
(``following``: joining channels between two reads; ``lifecycle``: retrying and bounded
closing; ``link``: health); every backplane keeps its deletions in ``tombstones``.

The core interface is ``Backplane`` (storage and live delivery). Six small optional interfaces
sit beside it, each met by methods of the class (never by attributes assigned at run time),
checked with ``isinstance`` once when the hub starts:

- ``Presence``: subscriber counts shared across hub processes (a single process has none);
- ``Health``: whether the store answers, for /healthz, /readyz and /metrics;
- ``Catalog``: which channels hold history, for ``GET /channels``;
- ``Tickets``: one-time subscribe tickets, good once on any hub process (``hub.grants``);
- ``Deletion``: deleting a finished channel on every process, and its tombstone;
- ``Closing``: closing a finished channel on every process: no more publishes, history kept.

The contract every implementation keeps; ``tests/backplane/test_backplane.py`` checks it
against each implementation, without HTTP, and a new one is done when it passes:

- ``publish`` stores the drafts, in order, all or none, with positions from one sequence that
  increases across all channels, and returns only once they are stored; it raises
  ``BackplaneUnavailable`` when it cannot tell whether they were (so the hub never acknowledges
  an event that may be lost) and ``BackplaneFull`` when storing would pass a limit. A repeated
  idempotency key returns the first publish's ids with ``replayed`` and stores nothing.
- the listener receives every stored event of every followed channel exactly once, in position
  order across channels, whichever process published it, from the frontier ``follow`` returned.
- ``history`` answers each page from one consistent snapshot of all the channels asked for, in
  position order, at most about ``max_bytes`` of frames a page (at least one event), so a resume
  never loads a channel's whole history at once; ``more`` says whether to ask again after the
  page's last position (with ``continued``). A resume that cannot be exact says why in
  ``reset`` (first page only).
- every method but ``close`` may raise ``BackplaneUnavailable``; none raises anything else for a
  store that answers with an error or goes away.

And for the optional ones:

- ``Tickets``: a ticket issued on one process is spent once, on any process: of two concurrent
  spends exactly one gets the channels; after its ttl nobody does.
- ``Deletion``: ``delete_channel`` ends what the history serves and leaves a tombstone for
  ``history_ttl`` seconds; while it stands, ``publish`` to the channel raises ``ChannelDeleted``
  (storing nothing of the batch), and every process's listener gets ``deleted(channel)``, in
  position order with the live events of the channels it follows. After ``follow(channels)``
  returned, ``deleted(channels)`` names those deleted by then; any later deletion reaches the
  listener. So a subscriber is told of a deletion either at once or by the listener, never not.
- ``Closing``: ``close_channel`` leaves a closed mark for ``history_ttl`` seconds (the history
  is untouched and expires as it would); while it stands, ``publish`` to the channel raises
  ``ChannelClosed`` (storing nothing of the batch), atomically with the close: a publish racing
  a close on another process is stored before the close or refused, never after it. Every
  process's listener gets ``closed(channel)`` in position order with the live events of the
  channels it follows (after every event stored before the close), and ``closed(channels)``
  after ``follow`` names those closed by then, like ``deleted``. A closed channel may still be
  deleted; a deleted one cannot be closed.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

from hub.backplane.registry import SCHEMES, scheme_of
from hub.events import Draft, Event

if TYPE_CHECKING:
    from hub.config import Config

__all__ = [
    "Backplane",
    "BackplaneFull",
    "BackplaneState",
    "BackplaneUnavailable",
    "Catalog",
    "ChannelClosed",
    "ChannelDeleted",
    "Closing",
    "Counts",
    "Deletion",
    "Health",
    "History",
    "Listener",
    "Presence",
    "Published",
    "Reset",
    "Tickets",
    "open_backplane",
]


class BackplaneUnavailable(Exception):
    """The backplane cannot store or read right now; the hub answers 503 and nothing is lost."""


class BackplaneFull(Exception):
    """Storing this would pass a configured limit (e.g. ``max_channels``)."""


class ChannelDeleted(Exception):
    """A publish named a deleted channel (its tombstone stands); nothing was stored."""

    def __init__(self, channel: str) -> None:
        super().__init__(f"channel {channel!r} was deleted")
        self.channel = channel


class ChannelClosed(ChannelDeleted):
    """A publish named a closed channel (finished: its history readable, its publishes over);
    nothing was stored. A ``ChannelDeleted`` so that every publish path that refuses a deleted
    channel's events refuses a closed one's alike; the answers tell them apart (409, not 410)."""

    def __init__(self, channel: str) -> None:
        super().__init__(channel)
        self.args = (f"channel {channel!r} is closed",)


class Listener(Protocol):
    """What the backplane calls back into (the hub); called on the event loop, never blocking."""

    def deliver(self, events: Sequence[Event]) -> None:
        """Live events of followed channels, in position order across channels."""

    def lost(self, channel: str) -> None:
        """Events of this channel can no longer be delivered live in order (e.g. trimmed while
        this process was cut off from the backplane): end its streams so clients resume."""

    def deleted(self, channel: str) -> None:
        """The channel was deleted (on any process): close its streams with ``event: close``."""

    def closed(self, channel: str) -> None:
        """The channel was closed (on any process), after every event stored before: its
        live streams end it with ``event: close``."""


@dataclass(frozen=True, slots=True)
class Reset:
    """Why a resume could not be exact; sent to the client as an ``event: reset`` frame."""

    reason: str  # "unknown-id": not an id of ours; "expired": history no longer reaches back
    oldest_id: str | None  # the oldest id still retained for the channels asked for


@dataclass(frozen=True, slots=True)
class History:
    """One page of retained events, by position.

    ``reset`` is set when the resume asked for cannot be exact: the page then starts from the
    oldest retained event instead. ``more``: ask again with ``after`` = the last event's position.
    """

    events: list[Event]
    reset: Reset | None = None
    more: bool = False


class Published(NamedTuple):
    """The ids of a publish; ``replayed`` when an idempotency key had already published them.

    A NamedTuple: one is made per publish, and a frozen dataclass's ``__init__`` sets each
    field through ``object.__setattr__``."""

    ids: list[str]
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class Counts:
    """Subscriber counts of some hub processes: per channel, and their open streams."""

    channels: Mapping[str, int] = field(default_factory=dict)
    streams: int = 0


@dataclass(slots=True)
class BackplaneState:
    """For /healthz and /readyz."""

    kind: str
    connected: bool = True
    detail: dict[str, Any] = field(default_factory=dict)


class Backplane(Protocol):
    """Storage and live delivery: the one interface every backplane implements."""

    async def start(self, listener: Listener) -> None:
        """Begin delivering live events of followed channels to ``listener``.

        Starts even while the store is unreachable (publishes then raise
        ``BackplaneUnavailable``), and keeps trying to reach it in the background.
        """

    async def close(self) -> None:
        """Stop reading and release connections; idempotent, bounded in time."""

    async def publish(self, drafts: Sequence[Draft], idempotency_key: str | None) -> Published:
        """Store ``drafts`` atomically (all or none) and return their ids."""

    async def history(
        self, channels: Sequence[str], after: int | None, max_bytes: int, *, continued: bool = False
    ) -> History:
        """A page of the retained events of ``channels`` after position ``after`` (None: all).

        ``continued``: ``after`` is the last position of the previous page, not a client's id,
        so no reset is looked for and the page is exactly the events above it. Without it a
        reset page of a multi-channel stream could not always be continued: when one channel
        was trimmed past events another still retains, the last position of the first page is
        itself "not exact", and a second reset would start over from the oldest event.
        """

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


@runtime_checkable
class Presence(Protocol):
    """Optional: subscriber counts shared with the other hub processes."""

    def share_counts(self, local: Callable[[], Counts]) -> None:
        """Publish ``local()`` (this process's counts) to the others, every few seconds."""

    def remote_counts(self) -> Counts:
        """The other processes' counts, summed; a few seconds old at most."""


@runtime_checkable
class Health(Protocol):
    """Optional: whether the store answers (a backplane without one is always healthy)."""

    def state(self) -> BackplaneState: ...


@runtime_checkable
class Catalog(Protocol):
    """Optional: the channels that hold history, for ``GET /channels``."""

    async def channels(self) -> dict[str, str]:
        """Channels with retained history, mapped to their newest event id."""


@runtime_checkable
class Tickets(Protocol):
    """Optional: one-time subscribe tickets, shared by every hub process."""

    async def issue_ticket(self, ticket: str, channels: Sequence[str], ttl: float) -> None:
        """Keep ``ticket`` (a digest, never the ticket itself) for ``ttl`` seconds."""

    async def spend_ticket(self, ticket: str) -> list[str] | None:
        """The ticket's channels, once: None when spent, expired or unknown (atomic)."""


@runtime_checkable
class Deletion(Protocol):
    """Optional: delete a channel on every process; its tombstone lasts ``history_ttl``."""

    async def delete_channel(self, channel: str, anyway: bool) -> bool | None:
        """Delete it: True; False when it holds no history and not ``anyway`` (nothing done);
        None when it is deleted already."""

    def deleted(self, channels: Sequence[str]) -> list[str]:
        """Those of ``channels`` deleted (by any process) as far as ``follow`` saw them."""


@runtime_checkable
class Closing(Protocol):
    """Optional: close a finished channel on every process; its mark lasts ``history_ttl``."""

    async def close_channel(self, channel: str) -> bool | None:
        """Close it (with or without history): True; False when it was closed already; None
        when it is deleted (nothing done)."""

    def closed(self, channels: Sequence[str]) -> list[str]:
        """Those of ``channels`` closed (by any process) as far as ``follow`` saw them."""


def open_backplane(config: Config) -> Backplane:
    """Build the backplane the config names; only the chosen implementation is imported."""
    scheme = scheme_of(config.backplane)
    if scheme is None:  # hub.config refuses these first; this guards direct callers
        raise ValueError(f"no backplane for {config.backplane!r}")
    module, _, name = SCHEMES[scheme].partition(":")
    factory: Callable[[Config], Backplane] = getattr(importlib.import_module(module), name)
    return factory(config)
