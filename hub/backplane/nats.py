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
   buffer if it is still there, so a reconnect cannot send it.
7. Tickets and deletion (``hub.backplane.nats_private``): a ticket is a message with a
   per-message TTL, spent by deleting its sequence (JetStream does that once); a deletion is a
   tombstone message on the channel's own subject, so point 4's check refuses every later
   publish atomically, and every reader meets it in order with the channel's events.

Modules: this (connection, stream, the protocol), ``nats_link`` (subjects, API calls, health),
``nats_publish``, ``nats_history`` (pages, resets, catalog), ``nats_reader`` (live delivery),
``nats_presence`` (cluster counts), ``nats_private`` (tickets, deletion).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from nats.aio.client import Client

from hub.backplane import BackplaneState, Counts, History, Listener, Published
from hub.backplane.nats_history import Pages
from hub.backplane.nats_link import (
    MIN_VERSION,
    UNAVAILABLE,
    ApiError,
    Subjects,
    api,
    new_link,
    stream_config,
)
from hub.backplane.nats_presence import NatsPresence
from hub.backplane.nats_private import PrivateChannels, Tombstones
from hub.backplane.nats_publish import Publisher
from hub.backplane.nats_publish import withdraw as _withdraw
from hub.backplane.nats_reader import Reader
from hub.config import Config, ConfigError
from hub.events import Draft

__all__ = ["NatsBackplane"]

log = logging.getLogger("hub.backplane")

#: Channels listed by ``channels()`` at most.
MAX_LISTED_CHANNELS = 10_000
CLOSE_STEP_TIMEOUT = 2.0
CONNECT_TIMEOUT = 3.0
STREAM_NOT_FOUND = 10059


class NatsBackplane:
    """``Backplane`` with ``Presence``, ``Health``, ``Catalog``, ``Tickets`` and ``Deletion``,
    on one JetStream stream."""

    def __init__(self, config: Config) -> None:
        if config.history_size < 1:
            raise ConfigError(
                "history_size = 0 is not possible with a NATS backplane: live events travel "
                "through the stream"
            )
        self._config = config
        self.stream = config.nats_stream
        self.subjects = Subjects(config.nats_subject_prefix)
        self.ttl = config.history_ttl
        self.instance = uuid.uuid4().hex[:12]
        self.link = new_link()
        self.nc: Client | None = None
        self.base = 0
        self.tombstones = Tombstones(config.history_ttl)
        self.publisher = Publisher(self)
        self._pages = Pages(self)
        self._reader = Reader(self)
        self._presence = NatsPresence(self)
        own = PrivateChannels(self)
        self.issue_ticket, self.spend_ticket = own.issue, own.spend
        self.delete_channel, self.deleted = own.delete, own.deleted
        self._tasks: list[asyncio.Task[None]] = []
        self.listener: Listener | None = None

    # -- connection and stream ---------------------------------------------------------------

    async def start(self, listener: Listener) -> None:
        self.listener = listener
        try:
            await self._connect()
        except ConfigError:
            await self._close_connection()
            raise
        except UNAVAILABLE as problem:
            self.link.lost("connection", problem)
        self._tasks = [
            asyncio.create_task(self._keep_connected(), name="nats-connect"),
            asyncio.create_task(self._reader.read_forever(), name="nats-reader"),
            asyncio.create_task(self._presence.exchange_forever(), name="nats-counts"),
        ]

    async def _connect(self) -> None:
        options: dict[str, Any] = {
            "servers": [url.strip() for url in self._config.backplane.split(",")],
            "connect_timeout": 2,
            "allow_reconnect": True,
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": 0.5,
            "ping_interval": 5,
            "max_outstanding_pings": 2,
            "pending_size": 0,  # nothing is buffered while NATS is away: see point 6
            "disconnected_cb": self._disconnected,
            "reconnected_cb": self._reconnected,
            "error_cb": self._error,
        }
        if self._config.nats_creds:
            options["user_credentials"] = self._config.nats_creds
        nc = Client()
        try:
            # Bounded: with reconnects allowed for ever, a first connect would try for ever.
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await nc.connect(**options)
        except BaseException:
            with contextlib.suppress(*UNAVAILABLE):
                await nc.close()
            raise
        version = nc.connected_server_version
        if (version.major, version.minor) < MIN_VERSION:
            self.nc = nc
            raise ConfigError(
                f"backplane: nats-server {version.major}.{version.minor}.{version.patch} is too "
                "old; the NATS backplane needs "
                f"{MIN_VERSION[0]}.{MIN_VERSION[1]} or newer (atomic batch publish, batched "
                "direct get, consumers filtered on several subjects)"
            )
        self.nc = nc
        try:
            await self._ensure_stream()
        except BaseException:
            # Not usable without its stream: _keep_connected connects and tries again.
            await self._close_connection()
            raise
        self.link.regained("connection")

    async def _keep_connected(self) -> None:
        while self.nc is None:
            await asyncio.sleep(0.5)
            try:
                await self._connect()
            except ConfigError as problem:
                log.error("%s", problem)
                await self._close_connection()
                self.link.lost("connection", str(problem))
                return
            except UNAVAILABLE as problem:
                self.link.lost("connection", problem)
                await self._close_connection()

    async def _disconnected(self) -> None:
        self.link.lost("connection", "disconnected")

    async def _reconnected(self) -> None:
        self.link.regained("connection")
        self._reader.restart()

    async def _error(self, problem: Exception) -> None:
        log.debug("NATS client: %s", problem)

    async def _ensure_stream(self) -> None:
        """Create the stream, or bring its limits to this config (other settings, e.g. replicas
        set by an operator, are kept)."""
        nc = self.require()
        name = self.stream
        try:
            info = await api(nc, f"$JS.API.STREAM.INFO.{name}")
        except ApiError as error:
            if error.code != STREAM_NOT_FOUND:
                raise
            wanted = stream_config(self._config, self.subjects)
            wanted["metadata"] = {"ssehub_base": str(time.time_ns() // 1000)}
            try:
                info = await api(nc, f"$JS.API.STREAM.CREATE.{name}", wanted)
            except ApiError:  # another process created it first
                info = await api(nc, f"$JS.API.STREAM.INFO.{name}")
        current: dict[str, Any] = info["config"]
        wanted = stream_config(self._config, self.subjects)
        if any(current.get(k) != v for k, v in wanted.items()):
            log.info("NATS stream %s: setting its limits to this hub's configuration", name)
            info = await api(nc, f"$JS.API.STREAM.UPDATE.{name}", current | wanted)
        self.base = int((info["config"].get("metadata") or {}).get("ssehub_base", 0))

    def require(self) -> Client:
        nc = self.nc
        if nc is None or not nc.is_connected:
            # An OSError, so every caller's UNAVAILABLE handling takes it (the tasks live on).
            raise ConnectionError("not connected to NATS")
        return nc

    async def stream_state(self) -> dict[str, Any]:
        info = await api(self.require(), f"$JS.API.STREAM.INFO.{self.stream}")
        state: dict[str, Any] = info["state"]
        return state

    async def close(self) -> None:
        self._reader.cancel_joins()
        for task in self._tasks:
            task.cancel()
        steps = [
            ("stopping the tasks", asyncio.gather(*self._tasks, return_exceptions=True)),
            ("leaving the cluster", self._presence.leave()),
            ("closing the connection", self._close_connection()),
        ]
        self._tasks = []
        for what, step in steps:
            try:
                async with asyncio.timeout(CLOSE_STEP_TIMEOUT):
                    await step
            except TimeoutError:
                log.warning("NATS backplane: %s took over %ss; going on", what, CLOSE_STEP_TIMEOUT)

    async def _close_connection(self) -> None:
        nc, self.nc = self.nc, None
        if nc is not None:
            with contextlib.suppress(*UNAVAILABLE):
                await nc.close()

    # -- the protocol ------------------------------------------------------------------------

    async def publish(self, drafts: Sequence[Draft], idempotency_key: str | None) -> Published:
        try:
            published = await self.publisher.publish(drafts, idempotency_key)
        except UNAVAILABLE as problem:
            raise self.link.unavailable("requests", problem) from None
        self.link.regained("requests")  # a write that worked: the request path is healthy
        return published

    async def history(
        self, channels: Sequence[str], after: int | None, max_bytes: int, *, continued: bool = False
    ) -> History:
        try:
            return await self._pages.read(channels, after, max_bytes, continued)
        except UNAVAILABLE as problem:
            raise self.link.unavailable("requests", problem) from None

    async def follow(self, channels: Sequence[str]) -> int:
        return await self._reader.follow(channels)

    def unfollow(self, channel: str) -> None:
        self._reader.unfollow(channel)

    # -- presence, catalog, health -----------------------------------------------------------

    def share_counts(self, local: Callable[[], Counts]) -> None:
        self._presence.share(local)

    def remote_counts(self) -> Counts:
        return self._presence.remote

    async def channels(self) -> dict[str, str]:
        try:
            return await self._pages.channels()
        except UNAVAILABLE as problem:
            raise self.link.unavailable("requests", problem) from None

    def state(self) -> BackplaneState:
        detail: dict[str, Any] = {
            "instance": self.instance,
            "stream": self.stream,
            "followed_channels": len(self._reader.cursors),
        }
        return self.link.state(detail)

    async def age_floor(self) -> int:
        return await self._pages.age_floor()

    def seen(self, channel: str, seq: int) -> None:
        self.publisher.seen(channel, seq)

    def remove_pending(self, token: bytes) -> None:
        _withdraw(self.nc, token)
