"""Redis backplane: history pages, resets and the channel catalog (see ``hub.backplane.redis``
point 3: a page is one script, so one snapshot of all its channels)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from hub.backplane import History, Reset
from hub.backplane.redis_keys import UNAVAILABLE, Keys, Link, entry_event, position
from hub.backplane.redis_scripts import HISTORY
from hub.backplane.since import time_floor
from hub.events import Event, event_id

__all__ = ["HISTORY_COUNT", "MAX_LISTED_CHANNELS", "Pages"]

#: Entries a history page reads per channel at most (the ``COUNT`` of its XRANGEs).
HISTORY_COUNT = 500
#: Channels listed by ``channels()`` at most (a bounded SCAN: an introspection aid, not an index).
MAX_LISTED_CHANNELS = 10_000


class Pages:
    def __init__(self, redis: aioredis.Redis, keys: Keys, link: Link, ttl_ms: int) -> None:
        self._redis = redis
        self._keys = keys
        self._link = link
        self._ttl_ms = ttl_ms
        self._history_script = redis.register_script(HISTORY)

    async def read(
        self, channels: Sequence[str], after: int | None, max_bytes: int, *, continued: bool = False
    ) -> History:
        """A page from one script (one snapshot); the reset, if any, only from ``after``."""
        reply = await self._page(channels, after or 0, max_bytes)
        last, origin, cutoff_us, more, info, page = reply
        events = _events(channels, page)
        if after is None or continued:
            return History(events, more=bool(more))
        trimmed = max((int(t) for t in info[::2]), default=0)
        missing = not all(info[1::2])
        unknown = after > int(last) or after < int(origin)
        # A channel whose stream expired whole kept no marker: an id older than the history's
        # time limit may have missed its events.
        expired = trimmed > after or (missing and after < int(cutoff_us))
        if not (unknown or expired):
            return History(events, more=bool(more))
        # Not exact: the client is told so, then gets everything retained, from the oldest.
        *_, more, _, page = await self._page(channels, 0, max_bytes)
        events = _events(channels, page)
        oldest = events[0].id if events else None
        reset = Reset("unknown-id" if unknown else "expired", oldest)
        return History(events, reset, bool(more))

    async def position_at(self, when: float) -> int | None:
        """``Since``: a position is at least its store time in microseconds (the publish
        script's ``max(last + 1, now_us)``), so the start is arithmetic, bounded by the newest."""
        after = time_floor(when)
        try:
            last = await self._redis.get(self._keys.key("seq"))
        except UNAVAILABLE as problem:
            raise self._link.unavailable("pool", problem) from None
        return after if last is not None and after < int(last) else None

    async def _page(self, channels: Sequence[str], after: int, max_bytes: int) -> Any:
        keys = [self._keys.key("seq"), self._keys.key("origin"), *self._keys.pairs_of(channels)]
        args = [after, HISTORY_COUNT, max_bytes, self._ttl_ms]
        args += [len(f"id: :{channel}\n".encode()) for channel in channels]
        try:
            return await self._history_script(keys=keys, args=args)
        except UNAVAILABLE as problem:
            raise self._link.unavailable("pool", problem) from None

    async def channels(self) -> dict[str, str]:
        """Channels with history: found by a bounded SCAN (an introspection aid, not an index)."""
        found: dict[str, str] = {}
        marker = self._keys.stream("")
        try:
            keys = []
            async for key in self._redis.scan_iter(match=f"{marker}*", count=1000):
                keys.append(key.decode())
                if len(keys) >= MAX_LISTED_CHANNELS:
                    break
            async with self._redis.pipeline(transaction=False) as pipe:
                # two: a closed channel's newest entry is its close's marker (``z``)
                _queued = [pipe.xrevrange(key, count=2) for key in keys]
                newest = await pipe.execute()
        except UNAVAILABLE as problem:
            raise self._link.unavailable("pool", problem) from None
        for key, entries in zip(keys, newest, strict=True):
            if entries and b"x" not in entries[0][1]:  # not a deleted channel's marker
                kept = [entry_id for entry_id, fields in entries if b"b" in fields]
                if kept:
                    channel = key[len(marker) :]
                    found[channel] = event_id(position(kept[0]), channel)
        return found


def _events(channels: Sequence[str], page: list[Any]) -> list[Event]:
    """A history reply's page: flat (channel index, entry id, body, store ms) per event."""
    return [
        entry_event(channels[int(index) - 1], position(entry_id), {b"b": body, b"t": stored})
        for index, entry_id, body, stored in zip(
            page[::4], page[1::4], page[2::4], page[3::4], strict=True
        )
    ]
