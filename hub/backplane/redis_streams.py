"""Redis backplane: ``Streams`` (``hub.backplane.streams``), Durable Streams' state.

Each method is one script of ``redis_streams_lua``, so its checks, the events it stores and the
marks it leaves are one atomic step for every hub process: two processes appending the same
producer tuple store it once, and an append racing a close (here or a native one) is stored
before the close or refused. This module only builds the scripts' arguments, reads their
replies, and notes at once in this process what a script marked (a deletion, a close, a name
taken again), as ``redis_private`` does; the reader tells the listeners, here and elsewhere,
in position order.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as aioredis

from hub.backplane import redis_scripts
from hub.backplane.redis_keys import UNAVAILABLE, Keys, Link
from hub.backplane.redis_streams_lua import APPEND, CREATE, DELETE_STREAM, STATE
from hub.backplane.streams import (
    Appended,
    Outcome,
    Producer,
    Shape,
    StreamState,
    check_append,
    media_type,
)
from hub.backplane.tombstones import Tombstones
from hub.events import Draft, event_id

__all__ = ["StreamStates", "StreamsFront"]

#: How long a script's reply is kept for a retry of the same call (the publish's own key's
#: time: longer than the library's retries of one call take).
OPERATION_TTL_MS = 30_000

# ``flags`` of a reply: what the script marked, to note here at once
DELETED, REVIVED, CLOSED = 1, 2, 4


class StreamStates:
    """The ``Streams`` methods of ``RedisBackplane``. ``operation`` names a fresh operation key
    (the backplane's, unique per process and call); ``tombstones`` and ``closings`` are the
    reader's, as ``redis_private``'s."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        link: Link,
        tombstones: Tombstones,
        closings: Tombstones,
        ttl_ms: int,
        history_size: int,
        operation: Callable[[], str],
    ) -> None:
        self._keys = keys
        self._link = link
        self._tombstones = tombstones
        self._closings = closings
        self._ttl_ms = ttl_ms
        self._history_size = history_size
        self._operation = operation
        self._create = redis.register_script(CREATE)
        self._state = redis.register_script(STATE)
        self._append = redis.register_script(APPEND)
        self._delete = redis.register_script(DELETE_STREAM)

    async def create(
        self, channel: str, shape: Shape, drafts: Sequence[Draft], closed: bool
    ) -> tuple[bool, StreamState]:
        expires_at = "" if shape.expires_at is None else repr(shape.expires_at)
        args: list[Any] = [shape.content_type, media_type(shape.content_type)]
        args += ["" if shape.ttl is None else str(shape.ttl), expires_at, int(closed)]
        args += _bodies(channel, drafts)
        created, flags, state = await self._run(self._create, channel, args, writes=True)
        self._note(channel, flags)
        return bool(created), _state(state)

    async def state(self, channel: str, touch: bool) -> StreamState | None:
        found, flags, state = await self._run(self._state, channel, [int(touch)], writes=False)
        self._note(channel, flags)
        return _state(state) if found else None

    async def append(
        self,
        channel: str,
        drafts: Sequence[Draft],
        content_type: str | None,
        producer: Producer | None,
        stream_seq: str | None,
        close: bool,
    ) -> Appended:
        check_append(drafts, close)
        args: list[Any] = [_given(content_type)]
        if producer is None:
            args += ["", 0, 0]
        else:
            args += [f"={producer.id}", producer.epoch, producer.seq]
        args += [_given(stream_seq), int(close), *_bodies(channel, drafts)]
        reply = await self._run(self._append, channel, args, writes=True)
        outcome, flags, state, ids, number = reply
        self._note(channel, flags)
        result = Outcome(outcome.decode())
        if result is Outcome.MISSING:
            return Appended(result)
        positions = ids.decode().split(",") if ids else []
        found = int(number) if number else None
        return Appended(
            result,
            _state(state),
            [event_id(int(at), channel) for at in positions],
            epoch=found if result is Outcome.STALE_EPOCH else None,
            expected_seq=found if result is Outcome.GAP else None,
            last_seq=found if result is Outcome.DUPLICATE else None,
        )

    async def delete(self, channel: str) -> bool:
        deleted, flags = await self._run(self._delete, channel, [], writes=True)
        self._note(channel, flags)
        return bool(deleted)

    async def _run(self, script: Any, channel: str, more: list[Any], *, writes: bool) -> Any:
        keys = self._keys.of_channel(channel)
        if writes:
            keys.append(self._operation())
        args: list[Any] = [self._ttl_ms, self._history_size, redis_scripts.NOTIFY_LENGTH]
        args += [channel, OPERATION_TTL_MS, *more]
        try:
            reply = await script(keys=keys, args=args)
        except UNAVAILABLE as problem:
            raise self._link.unavailable("pool", problem) from None
        self._link.regained("pool")
        return reply

    def _note(self, channel: str, flags: int) -> None:
        """What the script marked, known here at once (the reader tells the listeners)."""
        if flags & DELETED:
            self._tombstones.mark(channel, time.time())
            self._closings.lift(channel)
        if flags & REVIVED:
            self._tombstones.lift(channel)
            self._closings.lift(channel)
        if flags & CLOSED:
            self._closings.mark_until(channel, math.inf)  # as long as the stream


class StreamsFront:
    """Mixin: the ``Streams`` methods of ``RedisBackplane``, over ``self._streams``."""

    _streams: StreamStates

    async def create_stream(
        self, channel: str, shape: Shape, drafts: Sequence[Draft], closed: bool
    ) -> tuple[bool, StreamState]:
        return await self._streams.create(channel, shape, drafts, closed)

    async def stream_state(self, channel: str, *, touch: bool) -> StreamState | None:
        return await self._streams.state(channel, touch)

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
        return await self._streams.append(
            channel, drafts, content_type, producer, stream_seq, close
        )

    async def delete_stream(self, channel: str) -> bool:
        return await self._streams.delete(channel)


def _given(value: str | None) -> str:
    """An optional argument: '' for none, else '=' and the value (which may be empty)."""
    return "" if value is None else f"={value}"


def _bodies(channel: str, drafts: Sequence[Draft]) -> list[bytes]:
    if any(draft.channel != channel for draft in drafts):
        raise ValueError(f"every draft of a stream's append is for its channel {channel!r}")
    return [draft.body for draft in drafts]


def _state(reply: list[Any]) -> StreamState:
    """A script's state part: {ct, ttl, exp, closed, tail, created at, start}."""
    content_type, ttl, expires_at, closed, tail, created_at, start = reply
    shape = Shape(
        content_type.decode(),
        int(ttl) if ttl else None,
        float(expires_at) if expires_at else None,
    )
    return StreamState(shape, int(tail), bool(closed), float(created_at), int(start))
