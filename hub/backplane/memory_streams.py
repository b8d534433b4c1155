"""``Streams`` (``hub.backplane.streams``) on the memory backplane: Durable Streams' state.

A mixin of ``MemoryBackplane``, in a module of its own to keep each under 300 lines. Like the
rest of the memory backplane, no method awaits between its checks and its stores, so an
append's checks (closed, content type, producer, ``Stream-Seq``), its events and its close
happen in one step and need no lock. The events are stored by the backplane's own ``_store``,
the same path as a native publish, so a stream's messages are its channel's events.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from hub.backplane import BackplaneFull, Listener
from hub.backplane.memory_log import Log
from hub.backplane.streams import (
    MAX_PRODUCERS,
    Appended,
    Outcome,
    Producer,
    Shape,
    StreamState,
    check_append,
    media_type,
)
from hub.backplane.tombstones import Tombstones
from hub.events import Draft

__all__ = ["MemoryStreams", "StreamRecord"]


@dataclass(slots=True)
class StreamRecord:
    """A stream as the memory backplane keeps it beside its channel's log."""

    shape: Shape
    start: int
    tail: int
    created_at: float
    touched_at: float
    closed: bool = False
    closed_by: Producer | None = None
    last_seq: str | None = None  # the last Stream-Seq
    producers: dict[str, tuple[int, int]] = field(default_factory=dict)  # id -> (epoch, seq)

    def expired(self, now: float) -> bool:
        shape = self.shape
        if shape.expires_at is not None and now >= shape.expires_at:
            return True
        return shape.ttl is not None and now >= self.touched_at + shape.ttl

    def state(self) -> StreamState:
        return StreamState(self.shape, self.tail, self.closed, self.created_at, self.start)


class MemoryStreams:
    """The ``Streams`` methods; ``MemoryBackplane`` provides the state and the steps below."""

    _streams: dict[str, StreamRecord]
    _logs: dict[str, Log]
    _tombstones: Tombstones
    _closed: Tombstones
    _listener: Listener | None
    _last: int
    _max_channels: int

    def _store(self, drafts: Sequence[Draft], now: float) -> list[str]:
        raise NotImplementedError

    def _erase(self, channel: str) -> None:
        raise NotImplementedError

    def _make_room(self, drafts: Sequence[Draft], now: float) -> None:
        raise NotImplementedError

    def _next_position(self) -> int:
        raise NotImplementedError

    def marks(self, channels: Sequence[str]) -> tuple[int, dict[str, float], dict[str, float]]:
        """The newest position, and when the standing tombstones and closed marks of
        ``channels`` end (what a worker's proxy keeps a copy of: hub.backplane.engine_server)."""
        return self._last, self._tombstones.ends(channels), self._closed.ends(channels)

    async def create_stream(
        self, channel: str, shape: Shape, drafts: Sequence[Draft], closed: bool
    ) -> tuple[bool, StreamState]:
        now = time.time()
        existing = self._live(channel, now)
        if existing is not None:
            return False, existing.state()
        if len(self._streams) >= self._max_channels:
            raise BackplaneFull(
                f"the hub holds {len(self._streams)} streams; the limit (max_channels) is "
                f"{self._max_channels}"
            )
        self._make_room(drafts, now)
        # A new life for the name: a deletion's tombstone or a native close no longer apply.
        self._tombstones.lift(channel)
        self._closed.lift(channel)
        start = self._last = self._next_position()
        record = self._streams[channel] = StreamRecord(shape, start, start, now, now)
        if drafts:
            self._store(drafts, now)
        if closed:
            self._mark_closed(channel, None)
            if self._listener is not None:
                self._listener.closed(channel)
        return True, record.state()

    async def stream_state(self, channel: str, *, touch: bool) -> StreamState | None:
        now = time.time()
        record = self._live(channel, now)
        if record is None:
            return None
        if touch:
            record.touched_at = now
        return record.state()

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
        now = time.time()
        record = self._live(channel, now)
        if record is None:
            return Appended(Outcome.MISSING)
        if record.closed:
            if producer is not None and producer == record.closed_by:
                return Appended(Outcome.DUPLICATE, record.state(), last_seq=producer.seq)
            return Appended(Outcome.CLOSED, record.state())
        if content_type is not None and content_type != media_type(record.shape.content_type):
            return Appended(Outcome.MISMATCH, record.state())
        if producer is not None:
            refused = _check_producer(record, producer)
            if refused is not None:
                return refused
        if stream_seq is not None and record.last_seq is not None and stream_seq <= record.last_seq:
            return Appended(Outcome.SEQ_REGRESSION, record.state())
        ids: list[str] = []
        if drafts:
            self._make_room(drafts, now)
            ids = self._store(drafts, now)
        if producer is not None:
            producers = record.producers
            producers.pop(producer.id, None)  # re-inserted last: the most recently seen
            producers[producer.id] = (producer.epoch, producer.seq)
            if len(producers) > MAX_PRODUCERS:
                del producers[next(iter(producers))]
        if stream_seq is not None:
            record.last_seq = stream_seq
        record.touched_at = now
        if close:
            self._mark_closed(channel, producer)
            if self._listener is not None:
                self._listener.closed(channel)
        return Appended(Outcome.APPENDED, record.state(), ids)

    async def delete_stream(self, channel: str) -> bool:
        if self._live(channel, time.time()) is None:
            return False
        self._erase(channel)
        return True

    def _live(self, channel: str, now: float) -> StreamRecord | None:
        """The channel's stream, unless it has expired: then it is deleted now (lazily)."""
        record = self._streams.get(channel)
        if record is not None and record.expired(now):
            self._erase(channel)
            return None
        return record

    def _mark_closed(self, channel: str, producer: Producer | None) -> None:
        """Close the channel; a stream's close lasts as long as the stream, not history_ttl."""
        record = self._streams.get(channel)
        if record is None:
            self._closed.mark(channel, time.time())
            return
        record.closed = True
        record.closed_by = producer
        self._closed.mark_until(channel, math.inf)

    def _expire_streams(self, now: float) -> None:
        """The sweep's part: expired streams are deleted even if nobody asks for them again."""
        for name in [name for name, record in self._streams.items() if record.expired(now)]:
            self._erase(name)


def _check_producer(record: StreamRecord, producer: Producer) -> Appended | None:
    """The producer rules of the protocol's section 5.2.1; None when the append may go on."""
    known = record.producers.get(producer.id)
    if known is None:
        if producer.seq != 0:
            return Appended(Outcome.GAP, record.state(), expected_seq=0)
        return None
    epoch, seq = known
    if producer.epoch < epoch:
        return Appended(Outcome.STALE_EPOCH, record.state(), epoch=epoch)
    if producer.epoch > epoch:
        return Appended(Outcome.BAD_SEQ, record.state()) if producer.seq != 0 else None
    if producer.seq <= seq:
        return Appended(Outcome.DUPLICATE, record.state(), last_seq=seq)
    if producer.seq > seq + 1:
        return Appended(Outcome.GAP, record.state(), expected_seq=seq + 1)
    return None
