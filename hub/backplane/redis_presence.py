"""Redis backplane: subscriber counts shared by the hub processes of one prefix (``Presence``).

Each process writes its counts to ``P inst:<id>`` (a hash that expires unless refreshed) and
lists itself in ``P instances``; every ``COUNTS_INTERVAL`` it refreshes its own and sums the
others'. The exchange is also the pool's health probe: it is a write every few seconds, so it
notices a Redis that answers writes with errors, and notices when it stops.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import redis.asyncio as aioredis

from hub.backplane import Counts
from hub.backplane.lifecycle import retry_forever
from hub.backplane.redis_keys import UNAVAILABLE, Keys, Link

__all__ = ["COUNTS_INTERVAL", "STREAMS_FIELD", "Presence"]

#: Seconds between refreshes of the cluster-wide subscriber counts.
COUNTS_INTERVAL = 2.0
#: The hash field that holds a process's open streams: a space is never in a channel name.
STREAMS_FIELD = " streams"


class Presence:
    def __init__(self, redis: aioredis.Redis, keys: Keys, link: Link, instance: str) -> None:
        self._redis = redis
        self._keys = keys
        self._link = link
        self._instance = instance
        self._local: Callable[[], Counts] = Counts
        self._remote = Counts()

    def share(self, local: Callable[[], Counts]) -> None:
        self._local = local

    @property
    def remote(self) -> Counts:
        return self._remote

    async def exchange_forever(self) -> None:
        """Exchange counts until cancelled; a failure (error replies too) is logged, marks the
        link lost, and the next round tries again."""
        interval = COUNTS_INTERVAL
        await retry_forever(
            self._exchange,
            name="Redis counts",
            link=self._link,
            witness="pool",
            errors=UNAVAILABLE,
            backoff=lambda _: interval,
            every=interval,
        )

    async def leave(self) -> None:
        with contextlib.suppress(*UNAVAILABLE):
            await self._redis.delete(self._keys.key(f"inst:{self._instance}"))
            await self._redis.srem(self._keys.key("instances"), self._instance)

    async def _exchange(self) -> None:
        mine = self._keys.key(f"inst:{self._instance}")
        members = self._keys.key("instances")
        local = self._local()
        table: dict[str, int] = {k: v for k, v in local.channels.items() if v}
        table[STREAMS_FIELD] = local.streams  # also: HSET needs at least one field
        async with self._redis.pipeline(transaction=True) as pipe:
            _queued = [
                pipe.delete(mine),
                pipe.hset(mine, mapping=table),  # type: ignore[arg-type]
                pipe.pexpire(mine, int(COUNTS_INTERVAL * 3000)),
                pipe.sadd(members, self._instance),
                pipe.smembers(members),
            ]
            *_, others = await pipe.execute()
        peers = [p.decode() for p in others if p.decode() != self._instance]
        channels: dict[str, int] = {}
        streams = 0
        if peers:
            async with self._redis.pipeline(transaction=False) as pipe:
                _queued = [pipe.hgetall(self._keys.key(f"inst:{peer}")) for peer in peers]
                tables = await pipe.execute()
            for peer, counts in zip(peers, tables, strict=True):
                if not counts:  # that process is gone: its counts expired
                    await self._redis.srem(members, peer)
                for name, count in counts.items():
                    if name.decode() == STREAMS_FIELD:
                        streams += int(count)
                    else:
                        channels[name.decode()] = channels.get(name.decode(), 0) + int(count)
        self._remote = Counts(channels, streams)
