"""Publishing on the memory backplane: positions, the logs' appends, idempotency keys, the
bound on history bytes, and delivery to the listener, all in one step without an await.

A mixin of ``MemoryBackplane``, in a module of its own to keep each under 300 lines (as
``memory_streams``). ``publish`` is the backplane's general path; ``publish_now`` the same for
the hottest case, one untagged event without a key on a channel that has a history, folded
into one call for ``hub.api.publish_single``.
"""

from __future__ import annotations

import heapq
import time
from collections import OrderedDict
from collections.abc import Sequence

from hub.backplane import ChannelClosed, ChannelDeleted, Listener, Published
from hub.backplane.memory_log import Log, cost, position_of
from hub.backplane.memory_streams import StreamRecord
from hub.backplane.tombstones import Tombstones
from hub.events import TAGS_LINE, Draft, Event, stored_event

__all__ = ["MAX_IDEMPOTENCY_KEYS", "MemoryPublish"]

#: Idempotency keys kept at most, whatever their age (a memory guard).
MAX_IDEMPOTENCY_KEYS = 100_000

#: ``Event(...)`` without the NamedTuple's ``__new__`` (a Python function, one call a publish).
_event = tuple.__new__


class MemoryPublish:
    """The publishing methods; ``MemoryBackplane`` provides the state and ``_make_room``."""

    _history_size: int
    _history_ttl: float
    _max_bytes: int
    _bytes: int
    _logs: dict[str, Log]
    _idempotency: OrderedDict[str, tuple[float, list[str]]]
    _listener: Listener | None
    _last: int
    _tombstones: Tombstones
    _closed: Tombstones
    _streams: dict[str, StreamRecord]

    def _make_room(self, drafts: Sequence[Draft], now: float) -> None:
        raise NotImplementedError

    async def publish(self, drafts: Sequence[Draft], idempotency_key: str | None) -> Published:
        now = time.time()
        if idempotency_key is not None:
            self._expire_keys(now)
            seen = self._idempotency.get(idempotency_key)
            if seen is not None:
                return Published(ids=seen[1], replayed=True)
        if self._tombstones.standing and (
            gone := self._tombstones.among([d.channel for d in drafts])
        ):
            raise ChannelDeleted(gone[0])
        if self._closed.standing and (done := self._closed.among([d.channel for d in drafts])):
            raise ChannelClosed(done[0])
        if len(drafts) != 1 or drafts[0].channel not in self._logs:  # else room enough
            self._make_room(drafts, now)
        ids = self._store(drafts, now)
        if idempotency_key is not None:
            self._idempotency[idempotency_key] = (now + self._history_ttl, ids)
            if len(self._idempotency) > MAX_IDEMPOTENCY_KEYS:
                self._idempotency.popitem(last=False)
        return Published(ids=ids)

    def publish_now(self, channel: str, body: bytes) -> str | None:
        """``publish([Draft(channel, body)], None)`` in one call, for the common case only: its
        id, or None (nothing stored: take ``publish``) for a channel without a history yet
        (``max_channels`` may refuse it), while a channel of this hub is deleted or closed or
        a Durable Stream exists, or for a body with tags. ``channel`` is checked
        (``check_channel``: no line break), ``body`` is ``Draft.body``.

        Why: a publish through ``publish`` and ``_store`` is eight Python calls (a coroutine,
        ``stored_event``, ``with_id``, three NamedTuples, ``cost``); this is one. It must stay
        equal to them: the same position, id, frame, retained event, byte count, shedding and
        delivery (tests/publish/test_publish_fast.py compares the two on the wire)."""
        log = self._logs.get(channel)
        if (
            log is None
            or self._tombstones.standing
            or self._closed.standing
            or self._streams
            or body.startswith(TAGS_LINE)
        ):
            return None
        now = time.time()
        position = max(self._last + 1, time.time_ns() // 1000)  # next_position(), inlined
        ident = f"{position}:{channel}"
        frame = b"".join((b"id: ", ident.encode(), b"\n", body))  # sse.with_id(), inlined
        event: Event = _event(Event, (position, channel, frame, now, ()))
        before = log.bytes
        log.append(event, self._history_size, now - self._history_ttl)
        self._bytes += log.bytes - before
        self._last = position
        if self._max_bytes and self._bytes > self._max_bytes:
            self._shed()
        if self._listener is not None:
            self._listener.deliver((event,))
        return ident

    def _store(self, drafts: Sequence[Draft], now: float) -> list[str]:
        """Store checked drafts and deliver them, without awaiting (the caller checked first)."""
        events: list[Event] = []
        ids: list[str] = []
        position = self._last
        cutoff = now - self._history_ttl
        logs = self._logs
        keep = self._history_size
        streams = self._streams
        time_ns = time.time_ns
        for draft in drafts:
            channel = draft.channel
            position = max(position + 1, time_ns() // 1000)  # next_position(), inlined
            ident = f"{position}:{channel}"  # event_id(), inlined on the publish path
            event = stored_event(position, channel, draft.body, now, ident)
            events.append(event)
            ids.append(ident)
            log = logs.get(channel)
            if log is None:
                log = logs[channel] = Log()
            before = log.bytes
            log.append(event, keep, cutoff)
            self._bytes += log.bytes - before
            if streams and (stream := streams.get(channel)) is not None:
                stream.tail = position
        self._last = position
        if self._max_bytes and self._bytes > self._max_bytes:
            self._shed()
        if self._listener is not None:
            self._listener.deliver(events)
        return ids

    def _expire_keys(self, now: float) -> None:
        keys = self._idempotency
        while keys:
            key, (expires, _) = next(iter(keys.items()))
            if expires > now:
                break
            del keys[key]

    def _shed(self) -> None:
        """Over ``max_history_bytes``: drop the oldest events of all channels, by position,
        down to 7/8 of it (so this O(channels) pass runs once per 1/8 of the bound published).
        A resume from before them then gets a reset ("expired"), as after any trim."""
        excess = self._bytes - self._max_bytes * 7 // 8
        merged = heapq.merge(*(log.after(None) for log in self._logs.values()), key=position_of)
        cutoff = 0
        for event in merged:
            excess -= cost(event)
            cutoff = event.position
            if excess <= 0:
                break
        for log in self._logs.values():
            before = log.bytes
            log.drop_through(cutoff)
            self._bytes += log.bytes - before
