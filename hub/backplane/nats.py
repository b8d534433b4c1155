"""The NATS JetStream backplane: hub processes share ids and history through one stream.

One stream (``nats_stream``) holds every channel, on subjects ``P.<token>`` (``P`` is
``nats_subject_prefix``; ``hub.backplane.nats_link`` says how a channel becomes a token). A
position is ``base + sequence``: JetStream's stream sequence is one sequence across all
subjects, and ``base`` (the creation time in microseconds, kept in the stream's metadata) keeps
an id of an earlier stream of the same name from passing for one of this stream's.

Why the guarantees hold (the reasoning of ``hub.backplane.redis``, on JetStream):

1. Prefix property: JetStream assigns sequences in the order it stores messages, so the stored
   sequences are always a prefix of the sequence (less what limits removed). A batch is one
   atomic batch publish (all or none, consecutive sequences).
2. Live delivery: each process reads all its channels through one consumer filtered on their
   subjects, which delivers in sequence order (``hub.backplane.nats_reader``).
3. History: a page reads each channel with a batched direct get from the same point, keeps only
   sequences up to the stream's last sequence read just before (one snapshot bound) and only up
   to the lowest per-channel cut, so pages join without a gap, as on Redis.
4. Resets per channel: JetStream does not say which subject a removed message had, so every
   message names its channel's previous message in the ``Ssehub-Prev`` header. The publisher
   knows it exactly: it publishes with ``Nats-Expected-Last-Subject-Sequence`` (JetStream refuses
   the publish if another message of the channel came in between; it is then retried). When the
   channel holds nothing (new, or expired whole by age), the header holds the highest sequence
   older than ``history_ttl``, which bounds every message the channel may have lost. So a resume
   from ``after`` is exact iff each channel's oldest retained message names a previous one at or
   below ``after``; the reader uses the same header to notice a gap in live delivery.
5. Idempotency: a keyed single publish carries ``Nats-Msg-Id`` (the stream's duplicate window is
   ``history_ttl``), whose duplicate answer names the first sequence; a keyed batch also stores a
   record ``P_idem.<hex key>`` listing its channels, from which the first ids are rebuilt.
6. A publish answered 503 is never delivered later: the connection buffers nothing while NATS is
   away (``pending_size=0``), and a publish that timed out is taken out of the client's outgoing
   buffer if it is still there, so a reconnect cannot send it (``compat_nats``).
7. Tickets and deletion (``hub.backplane.nats_private``): a ticket is a message with a
   per-message TTL, spent by deleting its sequence (JetStream does that once); a deletion is a
   tombstone message on the channel's own subject, so point 4's check refuses every later
   publish atomically, and every reader meets it in order with the channel's events.
8. Durable Streams (``hub.backplane.nats_streams``): a stream's create and close markers are
   messages on its channel's subject like the tombstone, its state a record beside it on
   ``P_dstream.<token>``; every write is one atomic batch of both under point 4's expected last
   subject sequences, so each check an append makes still holds when it is stored.

Modules: this (the protocol, over its parts), ``nats_connection`` (connection, stream: what
every part takes), ``nats_link`` (subjects, API calls, health), ``nats_publish``,
``nats_history`` (pages, resets, catalog), ``nats_reader`` (live delivery), ``nats_presence``
(cluster counts), ``nats_private`` (tickets, deletion), ``nats_streams`` with ``nats_stream_io``
and ``nats_stream_record`` (point 8), ``nats_batch`` (atomic batches), ``nats_settings`` (its
``nats_*`` keys), ``compat_nats`` (point 6's use of nats-py internals). No part imports this
module: each takes the connection and only the other parts or callbacks it needs.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from hub.backplane import BackplaneState, Counts, History, Listener, Published
from hub.backplane.lifecycle import close_bounded
from hub.backplane.nats_connection import Connection
from hub.backplane.nats_history import Pages
from hub.backplane.nats_link import UNAVAILABLE
from hub.backplane.nats_presence import NatsPresence
from hub.backplane.nats_private import PrivateChannels
from hub.backplane.nats_publish import Publisher
from hub.backplane.nats_reader import Reader
from hub.backplane.nats_settings import NatsSettings
from hub.backplane.nats_streams import NatsStreams
from hub.backplane.private_front import PrivateFront
from hub.backplane.streams import Appended, Producer, Shape, StreamState
from hub.backplane.tombstones import Tombstones
from hub.config import Config, ConfigError
from hub.events import Draft

__all__ = ["NatsBackplane"]


class NatsBackplane(PrivateFront):  # Tickets, Deletion, Closing: hub.backplane.private_front
    """``Backplane`` with ``Presence``, ``Health``, ``Catalog``, ``Tickets``, ``Deletion``,
    ``Closing`` and ``Streams``, on one JetStream stream."""

    def __init__(self, config: Config) -> None:
        if config.history_size < 1:
            raise ConfigError(
                "history_size = 0 is not possible with a NATS backplane: live events travel "
                "through the stream"
            )
        settings = config.section(NatsSettings)
        self._conn = Connection(
            config.backplane,
            settings,
            config.history_size,
            config.history_ttl,
            reconnected=self._reconnected,
        )
        self._instance = uuid.uuid4().hex[:12]
        tombstones = Tombstones(config.history_ttl)
        closings = Tombstones(config.history_ttl)  # the closed channels
        self._pages = Pages(self._conn, tombstones)
        self._publisher = Publisher(self._conn, tombstones, self._pages.age_floor, closings)
        self._reader = Reader(self._conn, tombstones, self._publisher.seen, closings)
        self._presence = NatsPresence(self._conn, self._instance)
        self._private = PrivateChannels(self._conn, tombstones, self._publisher, closings)
        self._streams = NatsStreams(
            self._conn, self._publisher, tombstones, closings, self._pages.age_floor
        )
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, listener: Listener) -> None:
        self._reader.listener = listener
        try:
            await self._conn.connect()
        except ConfigError:
            await self._conn.close()
            raise
        except UNAVAILABLE as problem:
            self._conn.link.lost("connection", problem)
        self._tasks = [
            asyncio.create_task(self._conn.keep_connected(), name="nats-connect"),
            asyncio.create_task(self._reader.read_forever(), name="nats-reader"),
            asyncio.create_task(self._presence.exchange_forever(), name="nats-counts"),
        ]

    def _reconnected(self) -> None:
        self._reader.restart()

    async def close(self) -> None:
        """Stop the tasks, say goodbye to the cluster, close the connection: each step bounded,
        so a NATS that hangs cannot hold up the hub's shutdown."""
        self._reader.cancel_joins()
        tasks, self._tasks = self._tasks, []
        steps = [
            ("leaving the cluster", self._presence.leave),
            ("closing the connection", self._conn.close),
        ]
        await close_bounded("NATS", tasks, steps)

    # -- the protocol ------------------------------------------------------------------------

    async def publish(self, drafts: Sequence[Draft], idempotency_key: str | None) -> Published:
        try:
            published = await self._publisher.publish(drafts, idempotency_key)
        except UNAVAILABLE as problem:
            raise self._conn.link.unavailable("requests", problem) from None
        self._conn.link.regained("requests")  # a write that worked: the request path is healthy
        return published

    async def history(
        self, channels: Sequence[str], after: int | None, max_bytes: int, *, continued: bool = False
    ) -> History:
        try:
            return await self._pages.read(channels, after, max_bytes, continued)
        except UNAVAILABLE as problem:
            raise self._conn.link.unavailable("requests", problem) from None

    async def position_at(self, when: float) -> int | None:
        try:
            return await self._pages.position_at(when)
        except UNAVAILABLE as problem:
            raise self._conn.link.unavailable("requests", problem) from None

    async def follow(self, channels: Sequence[str]) -> int:
        return await self._reader.follow(channels)

    def unfollow(self, channel: str) -> None:
        self._reader.unfollow(channel)

    # -- Presence, Health, Catalog -----------------------------------------------------------

    def share_counts(self, local: Callable[[], Counts]) -> None:
        self._presence.share(local)

    def remote_counts(self) -> Counts:
        return self._presence.remote

    def state(self) -> BackplaneState:
        detail: dict[str, Any] = {
            "instance": self._instance,
            "stream": self._conn.stream,
            "followed_channels": len(self._reader.cursors),
            "unsent_bytes": self._conn.unsent(),
        }
        return self._conn.link.state(detail)

    async def channels(self) -> dict[str, str]:
        try:
            return await self._pages.channels()
        except UNAVAILABLE as problem:
            raise self._conn.link.unavailable("requests", problem) from None

    # -- Streams (hub.backplane.nats_streams) ------------------------------------------------

    async def create_stream(
        self, channel: str, shape: Shape, drafts: Sequence[Draft], closed: bool
    ) -> tuple[bool, StreamState]:
        return await self._streams.create_stream(channel, shape, drafts, closed)

    async def stream_state(self, channel: str, *, touch: bool) -> StreamState | None:
        return await self._streams.stream_state(channel, touch=touch)

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
        return await self._streams.append_stream(
            channel,
            drafts,
            content_type=content_type,
            producer=producer,
            stream_seq=stream_seq,
            close=close,
        )

    async def delete_stream(self, channel: str) -> bool:
        return await self._streams.delete_stream(channel)
