"""The Redis backplane: several hub processes (on one machine or many) share ids and history.

Layout (``P`` is ``redis_prefix``):

- ``P seq``: the last position issued, for all channels; ``P origin``: the first one ever issued;
- ``P s:<channel>``: the channel's history, a Stream of entries ``<position>-0`` holding the frame
  body (``b``) and the store time in ms (``t``), or a deletion's marker (``x``, no body), or a
  close's (``z``, no body);
- ``P t:<channel>``: the newest position trimmed from that stream (by size or age), so a resume
  from before it is known not to be exact;
- ``P idem:<key>``: the ids a publish with that Idempotency-Key produced;
- ``P gone:<channel>``, ``P ticket:<digest>``: tombstones (a closed channel's: ``c<position>``)
  and tickets (``redis_private``);
- ``P inst:<id>`` and ``P instances``: each process's subscriber counts, for cluster-wide counts;
- ``P notify``: one entry per publish script (publish or deletion): its id is the newest position
  the script stored, its field the channels it stored on; about ``NOTIFY_LENGTH`` entries are
  kept; ``P notify:trimmed``: the oldest id kept after the last trim of it;
- ``P wake:<id>``: a stream each process's reader also waits on, so a follow can wake it.

Modules: this (connections, lifecycle, publish, the protocol over its parts), ``redis_scripts``
(the Lua), ``redis_history`` (pages, resets, catalog), ``redis_reader`` (follow, XREAD loop),
``redis_presence`` (cluster counts), ``redis_private`` (tickets, deletion, closing),
``redis_keys`` (key layout, entries, link health), ``redis_settings`` (its ``redis_*`` keys).

Why one ``Last-Event-ID`` resumes a multi-channel stream exactly, though several processes
publish:

1. A publish is one Lua script: it takes the next positions from ``P seq`` and appends the events
   to their streams in the same atomic step (a deletion's marker entry likewise). So every
   position ever issued is already stored (or trimmed): the stored positions form a prefix.
2. Each process's reader waits on the notify stream, which the same scripts append to in the
   same atomic step. Reading it from its cursor up to entry ``M`` tells it which of its channels
   got events, and every position up to ``M`` is already stored; it reads just those channels'
   streams, each from its own cursor up to ``M``, and delivers the entries merged by position.
   The next read only finds positions above ``M``. New channels join between two reads
   (``_join``), at their newest entry, so a read covers every followed channel. Hence every
   process delivers the events of all channels in position order, and a subscriber that saw
   id ``N`` saw exactly the events at or below ``N`` of its channels since it started. (When
   ``COUNT`` cuts a channel short, only entries up to the lowest cut are delivered, and the
   rest is read again.) The cost of a read is in the channels that got events, not in the
   channels followed. A reader that the notify stream's trimming overtook (it notices by its
   trim marker), or that comes back after an outage, reads all its channels' streams once in
   one atomic ``XREAD`` with the sequence instead, the same argument with ``M`` the sequence.
3. A resume reads every channel of the stream in one script (one snapshot) and skips live events
   at or below what it replayed, as the hub does for every backplane. A page of history is cut
   by the same rule as a read: only up to the lowest ``COUNT`` cut among the channels, so each
   page is a prefix of the merged history and the next page, from its last position, goes on
   without a gap.

Failures: a publish answers only after Redis stored it; on a connection error, a timeout or an
error reply (OOM, BUSY, READONLY, MISCONF, NOSCRIPT, ...) it raises ``BackplaneUnavailable``
(the hub answers 503). After OOM or BUSY the script stored nothing (Redis refuses a script at
its first write); an error half-way through a script (only a foreign key of the wrong type under
the prefix could cause one) is not rolled back, so "cannot tell" is the honest answer for all.
Each publish carries an idempotency key (the client's, or a random one) checked inside the
script, so the library's retries after a timeout cannot store an event twice. Between two pages
of a history read, publishes only add higher positions; a page may miss only what the size limit
trimmed meanwhile. The reader keeps its cursors while Redis is away or answers errors,
and continues from them when it answers again, so nothing stored is missed or delivered twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from hub.backplane import (
    BackplaneState,
    ChannelClosed,
    ChannelDeleted,
    Counts,
    History,
    Listener,
    Published,
    redis_scripts,
)
from hub.backplane.lifecycle import close_bounded
from hub.backplane.private_front import PrivateFront
from hub.backplane.redis_history import Pages
from hub.backplane.redis_keys import UNAVAILABLE, Keys, new_link
from hub.backplane.redis_presence import Presence
from hub.backplane.redis_private import PrivateChannels
from hub.backplane.redis_reader import BLOCK_MS, Reader
from hub.backplane.redis_scripts import PUBLISH
from hub.backplane.redis_settings import RedisSettings
from hub.backplane.tombstones import Tombstones
from hub.config import Config, ConfigError
from hub.events import Draft, event_id

__all__ = ["RedisBackplane"]

#: Connections for publishes, history reads and joins (the reader has one of its own), and how
#: long a request may wait for one before it counts as Redis being unavailable.
MAX_CONNECTIONS = 64
POOL_WAIT = 5.0
#: How long a random (per-request) idempotency key is kept: longer than the library's retries of
#: one publish take (3 s timeouts, 2 retries), short because there is one per publish.
OPERATION_KEY_TTL_MS = 30_000


class RedisBackplane(PrivateFront):  # Tickets, Deletion, Closing: hub.backplane.private_front
    """``Backplane`` with ``Presence``, ``Health``, ``Catalog``, ``Tickets`` and ``Deletion``."""

    def __init__(self, config: Config) -> None:
        if config.history_size < 1:
            raise ConfigError(
                "history_size = 0 is not possible with a Redis backplane: live events travel "
                "through each channel's history stream"
            )
        self._keys = Keys(config.section(RedisSettings).prefix)
        self._history_size = config.history_size
        self._ttl_ms = int(config.history_ttl * 1000)
        self._instance = uuid.uuid4().hex[:12]
        self._ops = itertools.count()
        backoff = ExponentialWithJitterBackoff(base=0.05, cap=1.0)
        common: dict[str, Any] = {
            "socket_connect_timeout": 2.0,
            "socket_keepalive": True,
            "health_check_interval": 15,
        }
        # A blocking pool: a burst of subscribers waits for a connection instead of failing
        # (redis-py's default pool raises at 100 connections, which would read as an outage).
        pool = aioredis.BlockingConnectionPool.from_url(
            config.backplane,
            max_connections=MAX_CONNECTIONS,
            timeout=POOL_WAIT,
            socket_timeout=3.0,
            retry=Retry(backoff, retries=2),
            **common,
        )
        self._redis = aioredis.Redis.from_pool(pool)
        # The blocking reader has its own connection: it waits BLOCK_MS at a time.
        self._reader_connection = aioredis.Redis.from_url(
            config.backplane,
            socket_timeout=BLOCK_MS / 1000 + 5,
            retry=Retry(backoff, retries=1),
            single_connection_client=True,
            **common,
        )
        self._publish_script = self._redis.register_script(PUBLISH)
        self._link = new_link()
        self._wake_key = self._keys.key(f"wake:{self._instance}")
        tombstones = Tombstones(config.history_ttl)
        closings = Tombstones(config.history_ttl)
        self._reader = Reader(
            self._reader_connection,
            self._redis,
            self._keys,
            self._link,
            backoff,
            self._wake_key,
            tombstones,
            closings,
        )
        self._pages = Pages(self._redis, self._keys, self._link, self._ttl_ms)
        self._presence = Presence(self._redis, self._keys, self._link, self._instance)
        self._private = PrivateChannels(
            self._redis, self._keys, self._link, tombstones, closings, self._ttl_ms
        )
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, listener: Listener) -> None:
        self._reader.listener = listener
        try:
            await self._redis.ping()
        except UNAVAILABLE as problem:
            # Start anyway (clocks work; publishes answer 503) and keep trying in the background.
            self._link.lost("pool", problem)
        self._tasks = [
            asyncio.create_task(self._reader.read_forever(), name="redis-reader"),
            asyncio.create_task(self._presence.exchange_forever(), name="redis-counts"),
        ]

    async def close(self) -> None:
        """Stop the tasks, say goodbye to the cluster, close connections: each step bounded, so
        a Redis that hangs cannot hold up the hub's shutdown."""
        self._reader.cancel_joins()
        tasks, self._tasks = self._tasks, []
        steps = [("leaving the cluster", self._leave), ("closing connections", self._close)]
        await close_bounded("Redis", tasks, steps)

    async def _leave(self) -> None:
        await self._presence.leave()
        with contextlib.suppress(*UNAVAILABLE):
            await self._redis.delete(self._wake_key)

    async def _close(self) -> None:
        await self._reader_connection.aclose()
        await self._redis.aclose()

    # -- publish, history, live reading ------------------------------------------------------

    async def publish(self, drafts: Sequence[Draft], idempotency_key: str | None) -> Published:
        if idempotency_key is None:
            # unique per process (a random instance id) and per publish: no random bytes each
            key, ttl = (
                self._keys.key(f"op:{self._instance}:{next(self._ops)}"),
                OPERATION_KEY_TTL_MS,
            )
        else:
            key, ttl = self._keys.key(f"idem:{idempotency_key}"), self._ttl_ms
        keys = [self._keys.key("seq"), self._keys.key("origin"), key, *self._keys.notify()]
        keys += self._keys.triples_of([d.channel for d in drafts])
        args: list[Any] = [self._history_size, self._ttl_ms, ttl, redis_scripts.NOTIFY_LENGTH]
        args += [d.body for d in drafts]
        args += [d.channel for d in drafts]
        try:
            seen, joined = await self._publish_script(keys=keys, args=args)
        except UNAVAILABLE as problem:
            raise self._link.unavailable("pool", problem) from None
        self._link.regained("pool")
        if seen == 2:
            raise ChannelDeleted(drafts[int(joined) - 1].channel)
        if seen == 3:
            raise ChannelClosed(drafts[int(joined) - 1].channel)
        if seen:  # the first batch's ids, whatever this retry's body holds
            return Published(ids=joined.decode().split(","), replayed=idempotency_key is not None)
        positions = joined.decode().split(",")
        ids = [event_id(int(p), d.channel) for p, d in zip(positions, drafts, strict=True)]
        return Published(ids=ids, replayed=False)

    async def history(
        self, channels: Sequence[str], after: int | None, max_bytes: int, *, continued: bool = False
    ) -> History:
        return await self._pages.read(channels, after, max_bytes, continued=continued)

    async def position_at(self, when: float) -> int | None:
        return await self._pages.position_at(when)

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
            "followed_channels": len(self._reader.cursors),
        }
        return self._link.state(detail)

    async def channels(self) -> dict[str, str]:
        return await self._pages.channels()
