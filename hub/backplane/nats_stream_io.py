"""NATS backplane: the reads and writes of a Durable Stream (``hub.backplane.nats_streams``
says why they are atomic): its channel's last message and its record read together, one
atomic batch of channel messages and record, the tombstone, the touch, the purge.

Each write here is one attempt: refused by JetStream (a wrong last subject sequence: something
came in between), it answers None and the caller reads again and checks again.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace

from hub.backplane.nats_batch import Message, atomic
from hub.backplane.nats_connection import Connection
from hub.backplane.nats_link import (
    CLOSED,
    CREATED,
    GONE,
    PREV,
    UNAVAILABLE,
    ApiError,
    api,
    batch_get,
    stamp,
)
from hub.backplane.nats_publish import Publisher
from hub.backplane.nats_stream_record import Record, decode, encode
from hub.backplane.streams import Appended, Outcome, StreamState
from hub.backplane.tombstones import Tombstones
from hub.events import Draft, event_id

__all__ = ["Seen", "StreamIO", "kept", "settle"]

log = logging.getLogger("hub.backplane")

WRONG_LAST = 10071
EXPECT = "Nats-Expected-Last-Subject-Sequence"
ROLLUP = {"Nats-Rollup": "sub"}
#: A sliding TTL's touch is written at most this often per stream (seconds).
TOUCH_EVERY = 5.0
#: Streams whose last touch this process keeps at most (all forgotten past it).
MAX_TOUCHED = 50_000


@dataclass(slots=True)
class Seen:
    """A channel's last message and its stream's record, as read together."""

    last: int = 0  # the channel's last sequence (0: none)
    headers: dict[str, str] = field(default_factory=dict)  # of that message
    rec_seq: int = 0  # the record's sequence (0: none)
    record: Record | None = None

    def stream(self) -> Record | None:
        """The stream, unless there is none: no record, or deleted (a tombstone, natively)."""
        if self.record is None or self.record.gone or GONE in self.headers:
            return None
        return self.record

    @property
    def closed(self) -> bool:
        return CLOSED in self.headers or (self.record is not None and self.record.closed)


class StreamIO:
    """``age_floor`` as for the publisher (``nats_history``); the marks are the backplane's;
    ``touched``: this process's last touch of each stream (``nats_streams``)."""

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
        self._tombstones = tombstones
        self._closings = closings
        self._age_floor = age_floor
        self.touched: dict[str, float] = {}

    def expired(self, channel: str, record: Record) -> bool:
        return record.expired(time.time(), self.touched.get(channel, 0.0))

    async def read(self, channel: str) -> Seen:
        """The channel's last message and the record, in one batched direct get; a channel's
        marks follow what its last message says (a stream created again lifts them)."""
        subjects = self._bp.subjects
        own, state = subjects.of(channel), subjects.state(channel)
        found = await batch_get(self._bp.require(), self._bp.stream, {"multi_last": [own, state]})
        seen = Seen()
        for msg in found:
            headers = msg.headers or {}
            seq = int(headers["Nats-Sequence"])
            if headers.get("Nats-Subject") == state:
                seen.rec_seq, seen.record = seq, decode(msg.data, seq)
            else:
                seen.last, seen.headers = seq, headers
        if GONE in seen.headers:
            self._tombstones.mark(channel, stamp(seen.headers["Nats-Time-Stamp"]))
        elif seen.last:
            self._tombstones.lift(channel)
            if CLOSED in seen.headers:
                self._closings.mark(channel, stamp(seen.headers["Nats-Time-Stamp"]))
            else:
                self._closings.lift(channel)
        if seen.closed and seen.stream() is not None:  # a stream's close outlives its marker
            self._closings.mark(channel, time.time())
        rec = seen.record
        if rec is not None and not rec.gone and rec.start < seen.last:
            gone = GONE in seen.headers  # a native delete or close the record missed: it may
            if gone or (CLOSED in seen.headers and not rec.closed):  # have died before settle
                await settle(self._bp, self._publisher, channel, seen.last, gone=gone)
        return seen

    async def write(
        self,
        channel: str,
        seen: Seen,
        record: Record,
        drafts: Sequence[Draft],
        close: bool,
        opening: bool = False,
    ) -> Appended | None:
        """The channel's messages and the record as one batch; None when refused (read again)."""
        heads: list[tuple[bytes, dict[str, str]]] = []
        if opening:
            heads.append((b"", {CREATED: "1", PREV: "0"}))
        heads += [(draft.body, {PREV: "-1"}) for draft in drafts]
        if close:
            heads.append((b"", {CLOSED: "1", PREV: "0"}))
        first = heads[0][1]
        if first[PREV] == "-1":  # names the channel's previous message (``hub.backplane.nats``)
            first[PREV] = str(seen.last) if seen.last else f"~{await self._age_floor()}"
        first[EXPECT] = str(seen.last)
        subject = self._bp.subjects.of(channel)
        messages: list[Message] = [(subject, body, headers) for body, headers in heads]
        if not opening:
            # The tail the record keeps: never down, even when the oldest events expire.
            record = replace(record, at=max(record.at, seen.last))
        body = encode(record)
        kept_for = kept(record, time.time(), self._bp.ttl)
        messages.append((self._bp.subjects.state(channel), body, {EXPECT: str(seen.rec_seq)}))
        messages[-1][2].update(ROLLUP | kept_for)
        try:
            end = await atomic(self._bp, messages)
        except ApiError as error:
            if error.code == WRONG_LAST:
                return None
            raise
        base, top = self._bp.base, end - 1  # the channel's last message, before the record
        start = end - len(messages) + 1 + opening  # the first event
        ids = [event_id(base + start + i, channel) for i in range(len(drafts))]
        self._publisher.stored(channel, top)
        self.touched.pop(channel, None)
        if opening:
            self._tombstones.lift(channel)
            self._closings.lift(channel)
        if close:
            self._closings.mark(channel, time.time())
        written = decode(body, end)
        assert written is not None
        tail = top - close if drafts or opening else max(written.at, written.start)
        state = StreamState(
            written.shape, base + tail, written.closed, written.created_at, base + written.start
        )
        return Appended(Outcome.APPENDED, state, ids)

    async def tombstone(self, channel: str, seen: Seen, record: Record) -> bool:
        """Delete the stream as ``delete_channel`` does (a tombstone) and mark its record gone,
        in one batch; False when refused."""
        subjects = self._bp.subjects
        messages: list[Message] = [
            (subjects.of(channel), b"", {GONE: "1", PREV: "0", EXPECT: str(seen.last)}),
            (subjects.state(channel), encode(replace(record, gone=True)), {}),
        ]
        messages[-1][2].update({EXPECT: str(seen.rec_seq)} | ROLLUP)
        try:
            end = await atomic(self._bp, messages)
        except ApiError as error:
            if error.code == WRONG_LAST:
                return False
            raise
        self._tombstones.mark(channel, time.time())
        self._closings.lift(channel)
        self._publisher.stored(channel, end - 1)
        self.touched.pop(channel, None)
        return True

    async def state(self, channel: str, seen: Seen, record: Record) -> StreamState:
        """The stream as it stands; a closed one's tail is its last event, before the marker."""
        top = seen.last
        if CLOSED in seen.headers:
            request = {"multi_last": [self._bp.subjects.of(channel)], "up_to_seq": top - 1}
            found = await batch_get(self._bp.require(), self._bp.stream, request)
            top = int((found[0].headers or {})["Nats-Sequence"]) if found else 0
        base = self._bp.base
        tail = max(top, record.at, record.start)
        return StreamState(
            record.shape, base + tail, seen.closed, record.created_at, base + record.start
        )

    async def touch(
        self, channel: str, seen: Seen, record: Record, state: StreamState, now: float
    ) -> None:
        """Restart the sliding TTL: here at once, for the cluster at most every few seconds."""
        if len(self.touched) > MAX_TOUCHED:
            self.touched.clear()
        self.touched[channel] = now
        every = min(TOUCH_EVERY, (record.shape.ttl or 0) / 4)
        if now - record.touched < every:
            return
        at = state.tail - self._bp.base
        body = encode(replace(record, touched=now, at=at, closed=seen.closed))
        headers = {EXPECT: str(seen.rec_seq)} | ROLLUP | kept(record, now, self._bp.ttl)
        try:
            await self._publisher.send(self._bp.subjects.state(channel), body, headers)
        except ApiError as error:
            if error.code != WRONG_LAST:  # else a newer write came first: it counts as a touch
                raise

    async def purge(self, channel: str, below: int) -> None:
        """The messages of the channel's earlier life, below the create marker."""
        request = {"filter": self._bp.subjects.of(channel), "seq": below}
        try:
            await api(self._bp.require(), f"$JS.API.STREAM.PURGE.{self._bp.stream}", request)
        except UNAVAILABLE as problem:  # the stream stands; only native reads may see them
            log.warning("the earlier events of %s could not be purged: %s", channel, problem)


def kept(record: Record, now: float, history_ttl: float) -> dict[str, str]:
    """How long JetStream keeps a record: a stream outlives ``history_ttl`` (its events do not),
    so ``never`` (a later write rolls it up, a deletion marks it gone), or for a stream ending
    sooner by its TTL or expiry, a little past its end (then it is gone without a tombstone,
    if no read came to delete it lazily)."""
    shape, left = record.shape, math.inf
    if shape.expires_at is not None:
        left = shape.expires_at - now
    if shape.ttl is not None:
        left = min(left, shape.ttl)
    # Past the unwritten touches of another process, and a second more.
    if left + TOUCH_EVERY + 2 < history_ttl:
        return {"Nats-TTL": f"{math.ceil(max(left, 0) + TOUCH_EVERY) + 1}s"}
    return {"Nats-TTL": "never"}


async def settle(
    connection: Connection, publisher: Publisher, channel: str, marker: int, *, gone: bool
) -> None:
    """A native ``delete_channel`` or ``close_channel`` (``nats_private``) stored its marker at
    sequence ``marker``: a stream on the channel records it too (deleted, or closed), so it is
    not back when the marker expires with ``history_ttl``. Nothing for a record of a later
    life (created after the marker) or none; a record written meanwhile is read again."""
    subject = connection.subjects.state(channel)
    for _ in range(5):
        found = await batch_get(connection.require(), connection.stream, {"multi_last": [subject]})
        if not found:
            return
        seq = int((found[0].headers or {})["Nats-Sequence"])
        record = decode(found[0].data, seq)
        if record is None or record.gone or record.start > marker or (record.closed and not gone):
            return
        now = time.time()
        if gone:
            body, life = encode(replace(record, gone=True)), {}
        else:
            body, life = encode(replace(record, closed=True)), kept(record, now, connection.ttl)
        try:
            await publisher.send(subject, body, {EXPECT: str(seq)} | ROLLUP | life)
            return
        except ApiError as error:
            if error.code != WRONG_LAST:
                raise
