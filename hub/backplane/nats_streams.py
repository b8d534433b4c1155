"""NATS backplane: Durable Streams' state (``Streams``, ``hub.backplane.streams``), on JetStream.

A stream is its channel: its events are messages on the channel's subject ``P.<token>``,
published like the hub's own. Beside them, two kinds of message carry what a plain channel
lacks:

- markers on the channel's subject, no events (``nats_history`` and ``nats_reader`` skip them):
  the create marker (``Ssehub-Created``: the stream's ``start``; readers forget the marks of the
  channel's earlier life there), the close marker and the deletion tombstone of
  ``nats_private``, so every process's reader meets a stream's close and deletion in order
  with its events, exactly as ``close_channel`` and ``delete_channel``;
- the state record, the body of the last message on ``P_dstream.<token>`` (rolled up:
  ``Nats-Rollup: sub`` keeps one), ``nats_stream_record``: shape, producers' ``(epoch, seq)``,
  the last ``Stream-Seq``, the closing producer tuple, the last access.

What is atomic: every write (create, append, close, delete, lazy expiry) is one atomic batch of
its channel messages and the new record, the first channel message carrying
``Nats-Expected-Last-Subject-Sequence`` = the channel's last sequence as read, the record the
record subject's. The writer read both (one batched direct get) before checking; if anything
came in between on either subject (an append or close by another process, a native publish,
``close_channel``, ``delete_channel``, a touch), JetStream refuses the whole batch and the
writer reads again and checks again. So the checks and the store are one step: two processes
appending the same producer tuple store it once (the loser reads the winner's record and finds
a duplicate), an append racing a close is stored before the close marker or refused as
``CLOSED``, a producer's ``(epoch, seq)`` never moves without its events. Publishes of one
process on one channel also wait for each other (the publisher's lock), so they do not refuse
each other.

What is not atomic (each a documented window, none storing an event wrongly):

- a create on a deleted channel purges the old messages below its create marker after the
  batch (``STREAM.PURGE``, by subject): until then (or for ever, if the process dies between)
  a native read from the start may still serve events of the channel's earlier life; a stream
  read never does (it reads above ``start``);
- touches are kept per process and written at most every ``TOUCH_EVERY`` seconds (a quarter of
  the TTL for shorter ones) per stream, so a read costs no JetStream write; another process may
  expire a stream up to that long before its last read elsewhere would have kept it;
- the record outlives ``history_ttl`` (``Nats-TTL: never``, or a TTL'd stream's own end), but
  its markers do not: a closed stream's close marker expires with ``history_ttl``, then the
  record says it (the publisher's refresh and the reader's join read it with the channel's
  last message: ``nats_publish``, ``nats_link.last_markers``); a process that already follows
  the channel keeps its mark only ``history_ttl`` from the close, unless a read renews it;
- a stream ending by its TTL or expiry sooner than ``history_ttl`` has its record kept only a
  little past its end (``nats_stream_io.kept``): read after that, it is simply gone, without
  the tombstone a lazy expiry writes (a native reader of the channel is not told, and its
  events stay natively readable until ``history_ttl``);
- a native ``delete_channel`` or ``close_channel`` writes its marker, then the record
  (``nats_stream_io.settle``); a process dying between leaves it to the next read of the
  stream (which repairs it), and the stream deleted or closed meanwhile by the marker alone.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence

from hub.backplane import BackplaneFull, BackplaneUnavailable
from hub.backplane.nats_batch import MAX_ATOMIC_BATCH
from hub.backplane.nats_connection import Connection
from hub.backplane.nats_link import GONE, UNAVAILABLE
from hub.backplane.nats_publish import Publisher
from hub.backplane.nats_stream_io import StreamIO
from hub.backplane.nats_stream_record import Record, judge
from hub.backplane.streams import Appended, Outcome, Producer, Shape, StreamState, check_append
from hub.backplane.tombstones import Tombstones
from hub.events import Draft

__all__ = ["NatsStreams"]

#: Writes refused by a concurrent one, retried at most.
ATTEMPTS = 50


class NatsStreams:
    """``Streams`` on the hub's JetStream stream; its reads and writes are ``StreamIO``'s.
    ``age_floor`` as for the publisher (``nats_history``); the marks are the backplane's."""

    def __init__(
        self,
        connection: Connection,
        publisher: Publisher,
        tombstones: Tombstones,
        closings: Tombstones,
        age_floor: Callable[[], Awaitable[int]],
    ) -> None:
        self._bp = connection
        self._publisher = publisher
        self._io = StreamIO(connection, publisher, tombstones, closings, age_floor)

    async def create_stream(
        self, channel: str, shape: Shape, drafts: Sequence[Draft], closed: bool
    ) -> tuple[bool, StreamState]:
        _fits(drafts, 3)
        try:
            async with self._publisher.locked([channel]):
                return await self._create(channel, shape, drafts, closed)
        except UNAVAILABLE as problem:
            raise self._bp.link.unavailable("requests", problem) from None

    async def stream_state(self, channel: str, *, touch: bool) -> StreamState | None:
        io = self._io
        try:
            seen = await io.read(channel)
            record = seen.stream()
            if record is None:
                return None
            if io.expired(channel, record):
                async with self._publisher.locked([channel]):
                    await self._delete(channel, expired=True)
                return None
            state = await io.state(channel, seen, record)
            if touch and record.shape.ttl is not None:
                await io.touch(channel, seen, record, state, time.time())
            return state
        except UNAVAILABLE as problem:
            raise self._bp.link.unavailable("requests", problem) from None

    async def append_stream(
        self,
        channel: str,
        drafts: Sequence[Draft],
        *,
        content_type: str | None,
        producer: Producer | None,
        stream_seq: str | None,
        close: bool,
    ) -> Appended:
        check_append(drafts, close)
        _fits(drafts, 2)
        io = self._io
        try:
            async with self._publisher.locked([channel]):
                for _ in range(ATTEMPTS):
                    seen = await io.read(channel)
                    record: Record | None = seen.stream()
                    if record is not None and io.expired(channel, record):
                        await self._delete(channel, expired=True)
                        record = None
                    if record is None:
                        return Appended(Outcome.MISSING)
                    verdict = judge(
                        record, seen.closed, content_type, producer, stream_seq, close, time.time()
                    )
                    if verdict.record is None:  # refused, or a duplicate: nothing stored
                        return Appended(
                            verdict.outcome or Outcome.DUPLICATE,
                            await io.state(channel, seen, record),
                            epoch=verdict.epoch,
                            expected_seq=verdict.expected_seq,
                            last_seq=verdict.last_seq,
                        )
                    done = await io.write(channel, seen, verdict.record, drafts, close)
                    if done is not None:
                        return done
        except UNAVAILABLE as problem:
            raise self._bp.link.unavailable("requests", problem) from None
        raise _busy()

    async def delete_stream(self, channel: str) -> bool:
        try:
            async with self._publisher.locked([channel]):
                return await self._delete(channel, expired=False)
        except UNAVAILABLE as problem:
            raise self._bp.link.unavailable("requests", problem) from None

    async def _create(
        self, channel: str, shape: Shape, drafts: Sequence[Draft], closed: bool
    ) -> tuple[bool, StreamState]:
        io = self._io
        for _ in range(ATTEMPTS):
            seen = await io.read(channel)
            existing = seen.stream()
            if existing is not None and io.expired(channel, existing):
                await self._delete(channel, expired=True)
                continue
            if existing is not None:
                return False, await io.state(channel, seen, existing)
            now = time.time()
            count = 1 + len(drafts) + closed  # the channel's messages, the record after them
            record = Record(shape, now, now, start=-count, closed=closed)
            done = await io.write(channel, seen, record, drafts, closed, opening=True)
            if done is None:
                continue
            assert done.state is not None
            reborn = GONE in seen.headers or (seen.record is not None and seen.record.gone)
            if reborn and seen.last:  # the old life's events: never served again
                await io.purge(channel, done.state.start - self._bp.base)
            return True, done.state
        raise _busy()

    async def _delete(self, channel: str, *, expired: bool) -> bool:
        """``expired``: only if it has expired (a lazy expiry racing a create or a touch)."""
        io = self._io
        for _ in range(ATTEMPTS):
            seen = await io.read(channel)
            record = seen.stream()
            if record is None or (expired and not io.expired(channel, record)):
                return False
            if await io.tombstone(channel, seen, record):
                return True
        raise _busy()


def _fits(drafts: Sequence[Draft], extra: int) -> None:
    if len(drafts) + extra > MAX_ATOMIC_BATCH:
        raise BackplaneFull(
            f"an append on NATS holds at most {MAX_ATOMIC_BATCH - extra} messages (JetStream's "
            f"atomic batch limit); this one has {len(drafts)}: split it"
        )


def _busy() -> BackplaneUnavailable:
    return BackplaneUnavailable(
        f"NATS refused the stream's write {ATTEMPTS} times: other processes keep writing to it"
    )
