"""Redis backplane: one-time tickets, channel deletion and closing (``Tickets``, ``Deletion``,
``Closing``).

A ticket is a key ``P ticket:<digest>`` holding its channels, set with the ticket's ttl and
spent with ``GETDEL``: one atomic command, so of two processes spending it at once exactly one
gets it. A deletion is the ``DELETE`` script (``redis_scripts``): it ends what the history
serves (the entries before it stay, unserved, until they expire with the tombstone, for the
readers still behind them), leaves the tombstone ``P gone:<channel>`` for ``history_ttl`` (the
publish script refuses a channel whose tombstone stands) and a marker entry in the channel's
stream, which every process's reader meets in position order (``redis_reader``), so deletion
reaches every process without a channel of its own and without touching the ordering argument
of ``hub.backplane.redis``. A close is the ``CLOSE`` script, the same way: its mark is the
tombstone key valued ``c<position>`` (so the publish script's one lookup per event refuses both)
and its marker entry (field ``z``) reaches every reader in order; the history stays.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis

from hub.backplane import redis_scripts
from hub.backplane.redis_keys import UNAVAILABLE, Keys, Link
from hub.backplane.redis_scripts import CLOSE, DELETE
from hub.backplane.tombstones import Tombstones

__all__ = ["PrivateChannels"]


class PrivateChannels:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        link: Link,
        tombstones: Tombstones,
        closings: Tombstones,
        ttl_ms: int,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._link = link
        self._tombstones = tombstones  # the reader's too: it notes the deletions it meets
        self._closings = closings  # likewise for the closes
        self._ttl_ms = ttl_ms
        self._delete_script = redis.register_script(DELETE)
        self._close_script = redis.register_script(CLOSE)

    async def issue(self, ticket: str, channels: Sequence[str], ttl: float) -> None:
        try:
            await self._redis.set(
                self._keys.ticket(ticket), orjson.dumps(list(channels)), px=int(ttl * 1000)
            )
        except UNAVAILABLE as problem:
            raise self._link.unavailable("pool", problem) from None

    async def spend(self, ticket: str) -> list[str] | None:
        try:
            found = await self._redis.getdel(self._keys.ticket(ticket))
        except UNAVAILABLE as problem:
            raise self._link.unavailable("pool", problem) from None
        if found is None:
            return None
        channels = orjson.loads(found)
        return [str(c) for c in channels] if isinstance(channels, list) else None

    async def delete(self, channel: str, anyway: bool) -> bool | None:
        keys = self._keys.of_channel(channel)
        args: list[Any] = [int(anyway), self._ttl_ms, redis_scripts.NOTIFY_LENGTH, channel]
        try:
            done = await self._delete_script(keys=keys, args=args)
        except UNAVAILABLE as problem:
            raise self._link.unavailable("pool", problem) from None
        if done == -1:
            return None
        if done == 1:  # known here at once; the reader tells the listeners, here and elsewhere
            self._tombstones.mark(channel, time.time())
            self._closings.lift(channel)  # a Durable Stream's close ends with it
        return bool(done)

    def deleted(self, channels: Sequence[str]) -> list[str]:
        return self._tombstones.among(channels)

    async def close(self, channel: str) -> bool | None:
        keys = self._keys.of_channel(channel)
        args: list[Any] = [self._ttl_ms, redis_scripts.NOTIFY_LENGTH, channel]
        try:
            done = await self._close_script(keys=keys, args=args)
        except UNAVAILABLE as problem:
            raise self._link.unavailable("pool", problem) from None
        if done == -1:
            return None
        # The reader tells the listeners. A Durable Stream's close (2) lasts as long as it.
        if done == 2:
            self._closings.mark_until(channel, math.inf)
        else:
            self._closings.mark(channel, time.time())
        return bool(done)

    def closed(self, channels: Sequence[str]) -> list[str]:
        return self._closings.among(channels)
