"""The Redis backplane: several hub processes (on one machine or many) share ids and history.

Layout (``P`` is ``redis_prefix``):

- ``P seq``: the last position issued, for all channels; ``P origin``: the first one ever issued;
- ``P s:<channel>``: the channel's history, a Stream whose entry ids are ``<position>-0`` and whose
  entries hold the encoded frame body (``b``) and the store time in ms (``t``);
- ``P t:<channel>``: the newest position trimmed from that stream (by size or age), so a resume
  from before it is known not to be exact;
- ``P idem:<key>``: the ids a publish with that Idempotency-Key produced;
- ``P inst:<id>`` and ``P instances``: each process's subscriber counts, for cluster-wide counts.

Why one ``Last-Event-ID`` resumes a multi-channel stream exactly, though several processes
publish:

1. A publish is one Lua script: it takes the next positions from ``P seq`` and appends the events
   to their streams in the same atomic step. So at every instant, every position ever issued is
   already stored (or trimmed): the stored positions form a prefix of the sequence.
2. Each process reads all the channels it follows with one non-blocking ``XREAD``, which is
   atomic too, so a read sees such a prefix (a blocking XREAD serves only as the wait for new
   entries: woken, it may answer with one stream only). It delivers the entries merged by
   position; the next read only finds positions issued later, i.e. higher. New channels join
   between two reads (``_join``), so every read covers every followed channel. Hence every
   process delivers the events of all channels in position order, and a subscriber that saw
   id ``N`` saw exactly the events at or below ``N`` of its channels since it started. (When
   ``COUNT`` cuts a stream short, only entries up to the lowest cut are delivered, and the
   rest is read again.)
3. A resume reads every channel of the stream in one script (one snapshot) and skips live events
   at or below what it replayed, as the hub does for every backplane.

Failures: a publish answers only after Redis stored it; on a connection error or timeout it
raises ``BackplaneUnavailable`` (the hub answers 503). Each publish carries an idempotency key (the
client's, or a random one) checked inside the script, so the library's retries after a timeout
cannot store an event twice. The reader keeps its cursors while Redis is away and continues from
them when it answers again, so nothing stored is missed or delivered twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from hub import sse
from hub.backplane import (
    CONNECTIONS,
    BackplaneState,
    BackplaneUnavailable,
    History,
    Listener,
    Published,
    Reset,
)
from hub.config import Config, ConfigError
from hub.events import Draft, Event, event_id

__all__ = ["RedisBackplane"]

log = logging.getLogger("hub.backplane")

#: How long one XREAD waits for new entries before it is issued again (ms).
BLOCK_MS = 5000
#: Entries read per stream per XREAD.
READ_COUNT = 1000
#: Seconds between refreshes of the cluster-wide subscriber counts.
COUNTS_INTERVAL = 2.0
#: Connections for publishes, history reads and joins (the reader has one of its own), and how
#: long a request may wait for one before it counts as Redis being unavailable.
MAX_CONNECTIONS = 64
POOL_WAIT = 5.0
#: Seconds each step of closing may take before it is given up.
CLOSE_STEP_TIMEOUT = 2.0
#: How long a random (per-request) idempotency key is kept: longer than the library's retries of
#: one publish take (3 s timeouts, 2 retries), short because there is one per publish.
OPERATION_KEY_TTL_MS = 30_000
_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)

# KEYS: seq, origin, idempotency key, then (stream, trim marker) per event
# ARGV: maxlen, ttl ms, idempotency ttl ms, body per event...
# XADD's own MAXLEN trimming does not record what it removed (Redis 7.0's max-deleted-entry-id
# counts XDEL only), so the script notes the newest position it trims in the channel's marker.
_PUBLISH = """
local seen = redis.call('GET', KEYS[3])
if seen then return {1, seen} end
local clock = redis.call('TIME')
local now_us = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
if last == 0 then redis.call('SET', KEYS[2], string.format('%.0f', now_us)) end
local maxlen = tonumber(ARGV[1])
local ttl_ms = tonumber(ARGV[2])
local oldest = string.format('%.0f', now_us - ttl_ms * 1000) .. '-0'
local now_ms = string.format('%.0f', math.floor(now_us / 1000))
local function position(id) return tonumber(string.match(id, '^(%d+)')) end
local ids = {}
for i = 4, #KEYS, 2 do
  local stream, marker = KEYS[i], KEYS[i + 1]
  local body = ARGV[4 + (i - 4) / 2]
  local trimmed = 0
  if redis.call('EXISTS', stream) == 0 then
    -- new, or expired whole after a quiet spell: what came before the time limit is unknown
    trimmed = now_us - ttl_ms * 1000
  end
  local over = redis.call('XLEN', stream) + 1 - maxlen
  if over > 0 then
    local victims = redis.call('XRANGE', stream, '-', '+', 'COUNT', over)
    if #victims > 0 then trimmed = position(victims[#victims][1]) end
  end
  local at = math.max(last + 1, now_us)
  last = at
  local text = string.format('%.0f', at)
  redis.call('XADD', stream, 'MAXLEN', maxlen, text .. '-0', 'b', body, 't', now_ms)
  -- Age trimming only when the oldest entry is past the limit: a reverse range from the limit
  -- costs time in proportion to the stream's length, and usually finds nothing.
  local first = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)
  if #first > 0 and position(first[1][1]) < now_us - ttl_ms * 1000 then
    local expired = redis.call('XREVRANGE', stream, '(' .. oldest, '-', 'COUNT', 1)
    if #expired > 0 then
      trimmed = math.max(trimmed, position(expired[1][1]))
      redis.call('XTRIM', stream, 'MINID', oldest)
    end
  end
  if trimmed > 0 then
    local before = tonumber(redis.call('GET', marker) or '0')
    if trimmed > before then redis.call('SET', marker, string.format('%.0f', trimmed)) end
  end
  redis.call('PEXPIRE', stream, ttl_ms)
  redis.call('PEXPIRE', marker, ttl_ms)
  ids[#ids + 1] = text
end
redis.call('SET', KEYS[1], string.format('%.0f', last))
local joined = table.concat(ids, ',')
redis.call('SET', KEYS[3], joined, 'PX', ARGV[3])
return {0, joined}
"""

# KEYS: seq, origin, then (stream, trim marker) per channel   ARGV: exclusive start id, count
# Returns seq, origin, then per channel: its entries after the start, its trim marker, and
# whether its stream exists. One script: one snapshot of every channel.
_HISTORY = """
local out = {redis.call('GET', KEYS[1]) or '0', redis.call('GET', KEYS[2]) or '0'}
for i = 3, #KEYS, 2 do
  out[#out + 1] = redis.call('XRANGE', KEYS[i], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])
  out[#out + 1] = redis.call('GET', KEYS[i + 1]) or '0'
  out[#out + 1] = redis.call('EXISTS', KEYS[i])
end
return out
"""


def _position(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0])


class RedisBackplane:
    def __init__(self, config: Config) -> None:
        if config.history_size < 1:
            raise ConfigError(
                "history_size = 0 is not possible with a Redis backplane: live events travel "
                "through each channel's history stream"
            )
        self._prefix = config.redis_prefix
        self._history_size = config.history_size
        self._ttl_ms = int(config.history_ttl * 1000)
        self._instance = uuid.uuid4().hex[:12]
        self._backoff = ExponentialWithJitterBackoff(base=0.05, cap=1.0)
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
            retry=Retry(self._backoff, retries=2),
            **common,
        )
        self._redis = aioredis.Redis.from_pool(pool)
        # The blocking reader has its own connection: it waits BLOCK_MS at a time.
        self._reader = aioredis.Redis.from_url(
            config.backplane,
            socket_timeout=BLOCK_MS / 1000 + 5,
            retry=Retry(self._backoff, retries=1),
            single_connection_client=True,
            **common,
        )
        self._publish_script = self._redis.register_script(_PUBLISH)
        self._history_script = self._redis.register_script(_HISTORY)
        self._listener: Listener | None = None
        self._cursors: dict[str, int] = {}  # followed channel -> newest position delivered
        # channels waiting for the reader to join them -> their followers' frontier
        self._joining: dict[str, asyncio.Future[int]] = {}
        self._wake = asyncio.Event()
        self._connected = True
        self._lost_at: float | None = None
        self._last_error = ""
        self._remote: dict[str, int] = {}
        self._tasks: list[asyncio.Task[None]] = []

    # -- keys --------------------------------------------------------------------------------

    def _key(self, name: str) -> str:
        return f"{self._prefix}{name}"

    def _stream(self, channel: str) -> str:
        return f"{self._prefix}s:{channel}"

    def _marker(self, channel: str) -> str:
        """The newest position trimmed from the channel's stream (0 or missing: none)."""
        return f"{self._prefix}t:{channel}"

    def _pairs_of(self, channels: Sequence[str]) -> list[str]:
        return [key for c in channels for key in (self._stream(c), self._marker(c))]

    @property
    def _wake_key(self) -> str:
        return self._key(f"wake:{self._instance}")

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, listener: Listener) -> None:
        self._listener = listener
        try:
            await self._redis.ping()
        except _UNAVAILABLE as problem:
            # Start anyway (clocks work; publishes answer 503) and keep trying in the background.
            self._mark_lost(problem)
        self._tasks = [
            asyncio.create_task(self._read_forever(), name="redis-reader"),
            asyncio.create_task(self._count_forever(), name="redis-counts"),
        ]

    async def close(self) -> None:
        """Stop the tasks, say goodbye to the cluster, close connections: each step bounded, so
        a Redis that hangs cannot hold up the hub's shutdown."""
        for joining in self._joining.values():
            joining.cancel()
        for task in self._tasks:
            task.cancel()
        steps = [
            ("stopping the reader", asyncio.gather(*self._tasks, return_exceptions=True)),
            ("leaving the cluster", self._leave()),
            ("closing connections", self._close_connections()),
        ]
        self._tasks = []
        for what, step in steps:
            try:
                async with asyncio.timeout(CLOSE_STEP_TIMEOUT):
                    await step
            except TimeoutError:
                log.warning("Redis backplane: %s took over %ss; going on", what, CLOSE_STEP_TIMEOUT)

    async def _leave(self) -> None:
        with contextlib.suppress(RedisError, *_UNAVAILABLE):
            await self._redis.delete(self._key(f"inst:{self._instance}"), self._wake_key)
            await self._redis.srem(self._key("instances"), self._instance)

    async def _close_connections(self) -> None:
        await self._reader.aclose()
        await self._redis.aclose()

    # -- publish and history -----------------------------------------------------------------

    async def publish(self, drafts: Sequence[Draft], idempotency_key: str | None) -> Published:
        if idempotency_key is None:
            key, ttl = self._key(f"op:{uuid.uuid4().hex}"), OPERATION_KEY_TTL_MS
        else:
            key, ttl = self._key(f"idem:{idempotency_key}"), self._ttl_ms
        keys = [self._key("seq"), self._key("origin"), key]
        keys += self._pairs_of([d.channel for d in drafts])
        args: list[Any] = [self._history_size, self._ttl_ms, ttl] + [d.body for d in drafts]
        try:
            seen, joined = await self._publish_script(keys=keys, args=args)
        except _UNAVAILABLE as problem:
            self._mark_lost(problem)
            raise BackplaneUnavailable(f"Redis did not answer ({_describe(problem)})") from None
        self._mark_connected()
        positions = joined.decode().split(",")
        ids = [event_id(int(p), d.channel) for p, d in zip(positions, drafts, strict=True)]
        return Published(ids=ids, replayed=bool(seen) and idempotency_key is not None)

    async def history(self, channels: Sequence[str], after: int | None) -> History:
        keys = [self._key("seq"), self._key("origin"), *self._pairs_of(channels)]
        try:
            reply = await self._history_script(
                keys=keys, args=[f"{after or 0}-0", self._history_size]
            )
        except _UNAVAILABLE as problem:
            self._mark_lost(problem)
            raise BackplaneUnavailable(f"Redis did not answer ({_describe(problem)})") from None
        self._mark_connected()
        last, origin = int(reply[0]), int(reply[1])
        now = time.time()
        cutoff = now - self._ttl_ms / 1000
        events: list[Event] = []
        trimmed = 0
        missing = False
        per_channel = zip(channels, reply[2::3], reply[3::3], reply[4::3], strict=True)
        for channel, entries, marker, exists in per_channel:
            trimmed = max(trimmed, int(marker))
            missing = missing or not exists
            for entry_id, fields in entries:
                found = _event(channel, _position(entry_id), _pairs(fields))
                if found.published_at < cutoff:
                    trimmed = max(trimmed, found.position)  # expired, though not trimmed yet
                else:
                    events.append(found)
        events.sort(key=lambda event: event.position)
        if after is None:
            return History(events)
        unknown = after > last or after < origin
        # A channel whose stream expired whole kept no marker: an id older than the history's
        # time limit may have missed its events.
        expired = trimmed > after or (missing and after < (cutoff * 1_000_000))
        if unknown or expired:
            # Not exact: the client is told so, then gets everything retained.
            full = await self.history(channels, None)
            oldest = full.events[0].id if full.events else None
            return History(full.events, Reset("unknown-id" if unknown else "expired", oldest))
        return History(events)

    # -- live reading ------------------------------------------------------------------------

    async def follow(self, channels: Sequence[str]) -> int:
        """Have the reader join the channels it does not read yet; returns the frontier.

        The reader itself sets the new cursors, between two XREADs, so every XREAD covers every
        followed channel: that is what keeps deliveries in position order across channels.
        """
        loop = asyncio.get_running_loop()
        waits = []
        asked = False  # whether this call asks for a join nobody asked for yet
        for channel in channels:
            if channel in self._cursors:
                continue
            joining = self._joining.get(channel)
            if joining is None:
                joining = self._joining[channel] = loop.create_future()
                asked = True
            waits.append(joining)
        if not waits:
            return 0
        if asked:
            self._wake.set()
            try:
                # A reader blocked in XREAD returns when its wake stream gets an entry.
                await self._redis.xadd(self._wake_key, {"w": "1"}, maxlen=1)
            except _UNAVAILABLE as problem:
                self._mark_lost(problem)
                raise BackplaneUnavailable(f"Redis did not answer ({_describe(problem)})") from None
        # Shielded: one subscriber leaving must not cancel a join others wait for.
        frontiers = [await asyncio.shield(joining) for joining in waits]
        return max(frontiers)

    async def _join(self) -> None:
        """Set the cursors of newly followed channels to their newest entries (reader only)."""
        channels = list(self._joining)
        async with self._reader.pipeline(transaction=True) as pipe:
            # One transaction: the newest entries and the sequence are from the same instant,
            # so "everything after the frontier" is exactly "everything after the cursors".
            _queued: list[Any] = [pipe.xrevrange(self._stream(c), count=1) for c in channels]
            _queued.append(pipe.get(self._key("seq")))
            *newest, sequence = await pipe.execute()
        frontier = int(sequence or 0)
        for channel, entries in zip(channels, newest, strict=True):
            joining = self._joining.pop(channel, None)
            if joining is None:  # unfollowed meanwhile: nobody waits
                continue
            self._cursors[channel] = _position(entries[0][0]) if entries else 0
            if not joining.done():
                joining.set_result(frontier)

    def unfollow(self, channel: str) -> None:
        self._cursors.pop(channel, None)
        joining = self._joining.pop(channel, None)
        if joining is not None and not joining.done():
            joining.cancel()

    async def _read_forever(self) -> None:
        failures = 0
        recovering = False
        while True:
            self._wake.clear()
            try:
                if self._joining:
                    await self._join()
                if not self._cursors:
                    await self._wake.wait()
                    continue
                if recovering:
                    await self._check_gaps()
                    recovering = False
                streams: dict[Any, Any] = {
                    self._stream(c): f"{p}-0" for c, p in self._cursors.items()
                }
                # Non-blocking first: one XREAD is an atomic snapshot of every stream. A blocked
                # XREAD is only a wait: when new entries wake it, Redis (before 7.2) answers with
                # the stream that woke it alone, which is no snapshot of the others.
                reply: Any = await self._reader.xread(streams, count=READ_COUNT)
                if not reply:
                    streams[self._wake_key] = "$"
                    await self._reader.xread(streams, count=1, block=BLOCK_MS)
                    continue
            except _UNAVAILABLE as problem:
                self._mark_lost(problem)
                failures += 1
                recovering = True
                await asyncio.sleep(self._backoff.compute(failures))
                continue
            failures = 0
            self._mark_connected()
            self._dispatch(reply)

    def _dispatch(self, reply: list[Any]) -> None:
        channel_of = {self._stream(c): c for c in self._cursors}
        read: list[tuple[str, list[tuple[int, dict[bytes, bytes]]]]] = []
        cut: int | None = None
        for key, entries in reply:
            channel = channel_of.get(key.decode())
            if channel is None or not entries:  # the wake stream, or unfollowed meanwhile
                continue
            parsed = [(_position(entry_id), fields) for entry_id, fields in entries]
            if len(entries) >= READ_COUNT:  # cut short: later entries of others must wait
                cut = parsed[-1][0] if cut is None else min(cut, parsed[-1][0])
            read.append((channel, parsed))
        events: list[Event] = []
        for channel, parsed in read:
            cursor = self._cursors.get(channel)
            if cursor is None:
                continue
            for position, fields in parsed:
                if position <= cursor:  # re-followed with a newer cursor meanwhile
                    continue
                if cut is not None and position > cut:
                    break
                events.append(_event(channel, position, fields))
                cursor = position
            self._cursors[channel] = cursor
        if events and self._listener is not None:
            events.sort(key=lambda event: event.position)
            self._listener.deliver(events)

    async def _check_gaps(self) -> None:
        """After an outage: channels whose unread entries were trimmed meanwhile lose order."""
        channels = list(self._cursors)
        if not channels:
            return
        markers = await self._reader.mget([self._marker(c) for c in channels])
        for channel, marker in zip(channels, markers, strict=True):
            if int(marker or 0) > self._cursors.get(channel, 0) and self._listener is not None:
                log.warning("history of %s was trimmed while Redis was away", channel)
                self._listener.lost(channel)

    # -- cluster-wide counts -----------------------------------------------------------------

    async def _count_forever(self) -> None:
        mine = self._key(f"inst:{self._instance}")
        members = self._key("instances")
        while True:
            try:
                await self._exchange_counts(mine, members)
            except _UNAVAILABLE as problem:
                self._mark_lost(problem)
            else:
                self._mark_connected()
            await asyncio.sleep(COUNTS_INTERVAL)

    async def _exchange_counts(self, mine: str, members: str) -> None:
        assert self._listener is not None
        counts = {k: v for k, v in self._listener.local_counts().items() if v}
        counts.setdefault(CONNECTIONS, 0)  # HSET needs at least one field
        async with self._redis.pipeline(transaction=True) as pipe:
            _queued = [
                pipe.delete(mine),
                pipe.hset(mine, mapping=counts),  # type: ignore[arg-type]
                pipe.pexpire(mine, int(COUNTS_INTERVAL * 3000)),
                pipe.sadd(members, self._instance),
                pipe.smembers(members),
            ]
            *_, others = await pipe.execute()
        peers = [p.decode() for p in others if p.decode() != self._instance]
        total: dict[str, int] = {}
        if peers:
            async with self._redis.pipeline(transaction=False) as pipe:
                _queued = [pipe.hgetall(self._key(f"inst:{peer}")) for peer in peers]
                tables = await pipe.execute()
            for peer, table in zip(peers, tables, strict=True):
                if not table:  # that process is gone: its counts expired
                    await self._redis.srem(members, peer)
                for name, count in table.items():
                    total[name.decode()] = total.get(name.decode(), 0) + int(count)
        self._remote = total

    def remote_counts(self) -> Mapping[str, int]:
        return self._remote

    async def channels(self) -> dict[str, str]:
        """Channels with history: found by a bounded SCAN (an introspection aid, not an index)."""
        found: dict[str, str] = {}
        marker = self._stream("")
        try:
            keys = []
            async for key in self._redis.scan_iter(match=f"{marker}*", count=1000):
                keys.append(key.decode())
                if len(keys) >= 10_000:
                    break
            async with self._redis.pipeline(transaction=False) as pipe:
                _queued = [pipe.xrevrange(key, count=1) for key in keys]
                newest = await pipe.execute()
        except _UNAVAILABLE as problem:
            self._mark_lost(problem)
            raise BackplaneUnavailable(f"Redis did not answer ({_describe(problem)})") from None
        for key, entries in zip(keys, newest, strict=True):
            if entries:
                channel = key[len(marker) :]
                found[channel] = event_id(_position(entries[0][0]), channel)
        return found

    # -- state -------------------------------------------------------------------------------

    def _mark_lost(self, problem: BaseException) -> None:
        self._last_error = _describe(problem)
        if self._connected:
            self._connected = False
            self._lost_at = time.time()
            log.warning("backplane lost: Redis does not answer (%s)", self._last_error,
                        extra={"event": "backplane-lost"})  # fmt: skip

    def _mark_connected(self) -> None:
        if not self._connected:
            self._connected = True
            down = time.time() - (self._lost_at or time.time())
            log.info("backplane regained: Redis answers again after %.1fs", down,
                     extra={"event": "backplane-regained"})  # fmt: skip
            self._lost_at = None

    def state(self) -> BackplaneState:
        detail: dict[str, Any] = {
            "instance": self._instance,
            "followed_channels": len(self._cursors),
        }
        if not self._connected:
            detail["error"] = self._last_error
            detail["down_since"] = self._lost_at
        return BackplaneState(kind="redis", connected=self._connected, detail=detail)


def _pairs(flat: list[bytes]) -> dict[bytes, bytes]:
    """A Lua reply's flat [field, value, ...] list as the dict redis-py gives elsewhere."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _event(channel: str, position: int, fields: dict[bytes, bytes]) -> Event:
    frame = sse.with_id(event_id(position, channel), fields[b"b"])
    return Event(position, channel, frame, int(fields[b"t"]) / 1000)


def _describe(problem: BaseException) -> str:
    return f"{type(problem).__name__}: {problem}" if str(problem) else type(problem).__name__
