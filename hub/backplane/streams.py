"""Durable streams' state beside their channel's events: the optional ``Streams`` interface.

A Durable Stream (``hub.dialects.durable``) is a channel: its messages are the channel's events,
stored and delivered like any other, so a native ``EventSource`` reads them and a Durable
Streams client reads what the hub's own API published. What a plain channel lacks is kept here:
the stream's shape (content type, TTL or absolute expiry), whether it is closed, the last
``Stream-Seq`` and the idempotent producers' ``(epoch, seq)``. Each of these must change in the
same step as the events it guards, on every hub process at once, which only the backplane can
do (the memory backplane without awaiting, Redis in one script, NATS with the channel's
expected last sequence): hence an optional backplane interface, not a table in the dialect.

The contract (``tests/backplane/test_streams.py`` checks it on every backplane, without HTTP):

- ``create_stream`` stores the shape and the initial drafts (and closes the stream when asked)
  in one step, and returns ``(True, state)``; when a stream already exists on the channel (not
  expired) it stores nothing and returns ``(False, its state)``, so the caller can answer 200
  or 409 by comparing. A channel deleted (its tombstone standing) may be created again: the
  new stream starts empty and the old events are never served again. A channel that holds
  native history but no stream is created as a stream that starts after that history.
- ``stream_state`` is the stream's state, or None when there is none or it has expired (an
  expired stream is deleted then, lazily, as by ``delete_stream``). ``touch`` restarts a
  sliding TTL (reads and appends do; HEAD does not).
- ``tail`` is a position: every event of the stream has a position at or below it, and every
  later one above it (the creation position while it has none). It follows events published
  through the hub's own API too: a stream's tail is the last position of its channel.
  ``start`` is the creation position: the stream's events are the channel's events above it
  (a read from the stream's start is ``history(after=start)``). Neither ever decreases while
  the stream lives, even when its oldest events expire from the history.
- ``append_stream`` checks, in this order and atomically with storing: the stream exists
  (``MISSING``), is open (``CLOSED``; but a duplicate of the producer tuple that closed it is
  ``DUPLICATE``), the content type matches when given (``MISMATCH``: ``content_type`` is given
  as a ``media_type()`` and compared with the shape's), the producer's epoch and seq
  (``STALE_EPOCH``; ``BAD_SEQ`` for a new epoch not at 0; ``GAP``, also for an unknown
  producer not at 0; ``DUPLICATE`` for a seq at or below the last), the ``Stream-Seq`` is
  above the last one by plain string comparison (``SEQ_REGRESSION``); then stores the drafts
  (none is allowed only with ``close``), records the producer's ``(epoch, seq)`` and the
  ``Stream-Seq``, restarts a sliding TTL and closes the stream when ``close`` (remembering the
  producer tuple that closed it). Nothing is stored or recorded unless ``APPENDED``. A close
  reaches every
  process's listener as ``closed(channel)`` after the events stored before it, as
  ``Closing.close_channel`` does; ``Closing.close_channel`` on a stream's channel closes the
  stream, and ``closed()`` names it. A stream's close lasts as long as the stream (not only
  ``history_ttl``): native publishes to it are refused with ``ChannelClosed`` meanwhile.
- ``delete_stream`` deletes the stream and its events as ``Deletion.delete_channel`` does
  (every listener gets ``deleted(channel)``), and returns False when there was no stream.
  ``Deletion.delete_channel`` on a stream's channel deletes the stream too.
- every method may raise ``BackplaneUnavailable``, and nothing else for a store that errs.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from hub.events import Draft

__all__ = [
    "MAX_PRODUCERS",
    "Appended",
    "Outcome",
    "Producer",
    "Shape",
    "StreamState",
    "Streams",
    "check_append",
    "media_type",
]

#: Idempotent producers remembered per stream on memory and Redis (NATS: its own, smaller, as its
#: record is rewritten whole): past it the least recently seen is forgotten, then treated as new
#: (a seq other than 0 is a gap, expected 0), as the protocol allows; a guard against made-up
#: producer ids, on a stream without a TTL above all, which lives until it is deleted.
MAX_PRODUCERS = 10_000


def media_type(content_type: str) -> str:
    """A content type as compared: lower case, without parameters (``; charset=...``)."""
    return content_type.split(";", 1)[0].strip().lower()


@dataclass(frozen=True, slots=True)
class Shape:
    """What a create asks for, and what the stream keeps: compared to answer 200 or 409."""

    content_type: str
    ttl: int | None = None  # sliding, in seconds: reads and appends restart it
    expires_at: float | None = None  # absolute, seconds since the epoch


@dataclass(frozen=True, slots=True)
class Producer:
    """An idempotent producer's headers (``Producer-Id``, ``-Epoch``, ``-Seq``)."""

    id: str
    epoch: int
    seq: int


@dataclass(frozen=True, slots=True)
class StreamState:
    """A stream as it stands."""

    shape: Shape
    tail: int  # see the module's contract
    closed: bool = False
    created_at: float = 0.0
    start: int = 0  # the creation position: the stream's events are those above it


class Outcome(enum.Enum):
    APPENDED = "appended"
    DUPLICATE = "duplicate"  # the producer tuple was stored before: nothing stored again
    MISSING = "missing"
    CLOSED = "closed"
    MISMATCH = "mismatch"  # content type
    STALE_EPOCH = "stale-epoch"  # 403, with the current epoch
    BAD_SEQ = "bad-seq"  # a new epoch must start at seq 0: 400
    GAP = "gap"  # 409, with the expected seq
    SEQ_REGRESSION = "seq-regression"  # Stream-Seq not above the last: 409


@dataclass(frozen=True, slots=True)
class Appended:
    """What an append did. ``state`` is the stream after it (None when ``MISSING``)."""

    outcome: Outcome
    state: StreamState | None = None
    ids: list[str] = field(default_factory=list)
    epoch: int | None = None  # STALE_EPOCH: the producer's current epoch
    expected_seq: int | None = None  # GAP: the seq the producer must send next
    last_seq: int | None = None  # DUPLICATE by a producer: its highest accepted seq


@runtime_checkable
class Streams(Protocol):
    """Optional: Durable Streams' state, atomic with the channel's events on every process."""

    async def create_stream(
        self, channel: str, shape: Shape, drafts: Sequence[Draft], closed: bool
    ) -> tuple[bool, StreamState]: ...

    async def stream_state(self, channel: str, *, touch: bool) -> StreamState | None: ...

    async def append_stream(
        self,
        channel: str,
        drafts: Sequence[Draft],
        *,
        content_type: str | None,
        producer: Producer | None,
        stream_seq: str | None,
        close: bool,
    ) -> Appended: ...

    async def delete_stream(self, channel: str) -> bool: ...


def check_append(drafts: Sequence[Draft], close: bool) -> None:
    """The one precondition of ``append_stream`` every backplane shares: an append stores
    drafts, closes the stream, or both (the dialect answers an empty POST before asking)."""
    if not drafts and not close:
        raise ValueError("an append stores drafts, closes the stream, or both")
