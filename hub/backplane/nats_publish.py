"""NATS backplane: publishing (see ``hub.backplane.nats`` points 1, 4, 5 and 6).

Each message names its channel's previous message (``Ssehub-Prev``), and JetStream checks that
claim (``Nats-Expected-Last-Subject-Sequence``), so the chain of a channel is exact whichever
process published. The last sequence of each channel is cached; a stale cache costs a refused
publish and a retry, never a wrong header. Publishes of one process on one channel wait for each
other (a lock per channel), so they do not refuse each other.

A channel whose tombstone (or close marker) this process knows of (``hub.backplane.nats_private``)
is refused here after one batched read of its last message (a Durable Stream may have been
created on it again since: ``hub.backplane.nats_streams``; only a refused publish pays it); one
it does not know of is refused by JetStream (its last message is the tombstone, not the one the
publish names), and the refresh that follows finds the tombstone. The refresh also reads the
channels' stream records: a closed stream whose close marker expired with its events
(``history_ttl``) refuses native publishes all the same.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import orjson

from hub.backplane import (
    BackplaneFull,
    BackplaneUnavailable,
    ChannelClosed,
    ChannelDeleted,
    Published,
)
from hub.backplane.nats_batch import MAX_ATOMIC_BATCH, OP, Message, atomic
from hub.backplane.nats_connection import Connection
from hub.backplane.nats_link import API_TIMEOUT, CLOSED, GONE, PREV, ApiError, batch_get, stamp
from hub.backplane.nats_stream_record import decode
from hub.backplane.tombstones import Tombstones
from hub.events import Draft, event_id

__all__ = ["Publisher"]

WRONG_LAST = 10071
DUPLICATE_IN_BATCH = 10201
#: Refused publishes (another process published on the channel meanwhile) retried at most.
ATTEMPTS = 50
#: Channel locks and cached sequences kept at most (unused ones are dropped past it).
MAX_CACHED = 50_000


class Publisher:
    """``age_floor``: the highest sequence that may be older than ``history_ttl``
    (``nats_history``), named by the first message of a channel that holds nothing."""

    def __init__(
        self,
        connection: Connection,
        tombstones: Tombstones,
        age_floor: Callable[[], Awaitable[int]],
        closings: Tombstones,
    ) -> None:
        self._bp = connection
        self._tombstones = tombstones
        self._closings = closings  # the closed channels, refused alike (ChannelClosed)
        self._age_floor = age_floor
        self._last: dict[str, int] = {}  # channel -> its newest sequence, as last seen
        self._locks: dict[str, asyncio.Lock] = {}

    @asynccontextmanager
    async def locked(self, channels: Sequence[str]) -> AsyncIterator[None]:
        """Publishes of this process on these channels wait for each other (``nats_streams``
        takes it too)."""
        names = sorted(set(channels))
        if len(self._locks) > MAX_CACHED:
            for name in [n for n, lock in self._locks.items() if not lock.locked()]:
                del self._locks[name]
                self._last.pop(name, None)
        locks = [self._locks.setdefault(name, asyncio.Lock()) for name in names]
        for lock in locks:
            await lock.acquire()
        try:
            yield
        finally:
            for lock in locks:
                lock.release()

    async def publish(self, drafts: Sequence[Draft], key: str | None) -> Published:
        channels = [d.channel for d in drafts]
        if len(drafts) + (key is not None) > MAX_ATOMIC_BATCH:
            raise BackplaneFull(
                f"a batch on NATS holds at most {MAX_ATOMIC_BATCH} messages (JetStream's atomic "
                f"batch limit), {MAX_ATOMIC_BATCH - 1} events with an Idempotency-Key; this one "
                f"has {len(drafts)}: split it or lower max_batch"
            )
        tombstones = self._tombstones
        checked = False
        async with self.locked(channels):
            for _ in range(ATTEMPTS):
                unknown = sorted({c for c in channels if c not in self._last})
                if unknown:
                    await self._refresh(unknown)
                    checked = True
                gone = tombstones.among(channels) if tombstones else []
                done = self._closings.among(channels) if self._closings else []
                if (gone or done) and not checked:
                    # A Durable Stream may have been created again on it since (nats_streams):
                    # its last message says, one batched read for a refused publish only.
                    checked = True
                    await self._refresh(sorted(set(gone + done)))
                    continue
                if gone:
                    raise ChannelDeleted(gone[0])
                if done:
                    raise ChannelClosed(done[0])
                floor = None
                if any(self._last[c] == 0 for c in channels):
                    floor = await self._age_floor()
                try:
                    if len(drafts) == 1 and key is None:
                        seqs = await self._single(drafts[0], floor)
                    else:
                        seqs = await self._batch(drafts, key, floor)
                except ApiError as error:
                    if error.code == WRONG_LAST:
                        for channel in set(channels):
                            self._last.pop(channel, None)
                        continue
                    if error.code == DUPLICATE_IN_BATCH and key is not None:
                        return await self._replay(key, len(drafts))
                    raise
                for channel, seq in zip(channels, seqs, strict=True):
                    self._last[channel] = seq
                ids = [event_id(self._bp.base + s, c) for s, c in zip(seqs, channels, strict=True)]
                return Published(ids=ids)
        raise BackplaneUnavailable(
            f"NATS refused the publish {ATTEMPTS} times: other processes keep publishing on "
            "the same channels"
        )

    def seen(self, channel: str, seq: int) -> None:
        """The reader saw a newer message of a channel: the cache follows it."""
        if channel in self._last and seq > self._last[channel]:
            self._last[channel] = seq

    def stored(self, channel: str, seq: int) -> None:
        """This process stored the channel's newest message (a tombstone: ``nats_private``)."""
        self._last[channel] = seq

    async def _refresh(self, channels: list[str]) -> None:
        """The channels' last messages, and their Durable Streams' records: a closed stream
        whose close marker expired with its events (``history_ttl``) is still closed."""
        nc = self._bp.require()
        subjects = self._bp.subjects
        for channel in channels:
            self._last[channel] = 0
        for at in range(0, len(channels), 50):
            states = {subjects.state(c): c for c in channels[at : at + 50]}
            chunk = [subjects.of(c) for c in states.values()] + list(states)
            closed: list[str] = []
            for msg in await batch_get(nc, self._bp.stream, {"multi_last": chunk}):
                headers = msg.headers or {}
                name = subjects.channel(headers["Nats-Subject"])
                if name is None:
                    record = decode(msg.data, int(headers["Nats-Sequence"]))
                    if record is not None and record.closed and not record.gone:
                        closed += [states.get(headers["Nats-Subject"], "")]
                    continue
                self._last[name] = int(headers["Nats-Sequence"])
                if GONE in headers:
                    self._tombstones.mark(name, stamp(headers["Nats-Time-Stamp"]))
                elif CLOSED in headers:
                    self._closings.mark(name, stamp(headers["Nats-Time-Stamp"]))
                    self._tombstones.lift(name)
                else:  # a stream created again since (nats_streams)
                    self._tombstones.lift(name)
                    self._closings.lift(name)
            for name in closed:
                if self._last.get(name) == 0:
                    self._closings.mark(name, time.time())

    def _headers(self, channel: str, floor: int | None) -> dict[str, str]:
        last = self._last[channel]
        prev = str(last) if last else f"~{floor or 0}"
        return {PREV: prev, "Nats-Expected-Last-Subject-Sequence": str(last)}

    async def send(self, subject: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
        """A request whose timeout withdraws it from the client's buffer (point 6)."""
        nc = self._bp.require()
        token = uuid.uuid4().hex
        headers[OP] = token
        try:
            reply = await nc.request(subject, body, timeout=API_TIMEOUT, headers=headers)
        except BaseException:
            self._bp.withdraw(token.encode())
            raise
        answer: dict[str, Any] = orjson.loads(reply.data) if reply.data else {}
        error = answer.get("error")
        if error:
            raise ApiError(int(error.get("err_code", 0)), str(error.get("description", "")))
        return answer

    async def _single(self, draft: Draft, floor: int | None) -> list[int]:
        headers = self._headers(draft.channel, floor)
        answer = await self.send(self._bp.subjects.of(draft.channel), draft.body, headers)
        return [int(answer["seq"])]

    async def _batch(
        self, drafts: Sequence[Draft], key: str | None, floor: int | None
    ) -> list[int]:
        """An atomic batch; a keyed one ends with its record (point 5)."""
        subjects = self._bp.subjects
        where: dict[str, int] = {}
        messages: list[Message] = []
        for index, draft in enumerate(drafts):
            if draft.channel in where:
                headers = {PREV: str(where[draft.channel] - index)}
            else:
                headers = self._headers(draft.channel, floor)
            where[draft.channel] = index
            messages.append((subjects.of(draft.channel), draft.body, headers))
        if key is not None:
            record = orjson.dumps([d.channel for d in drafts])
            messages.append((subjects.record(key), record, {"Nats-Msg-Id": key}))
        end = await atomic(self._bp, messages)
        if key is not None:
            end -= 1  # the record comes last
        return list(range(end - len(drafts) + 1, end + 1))

    async def _replay(self, key: str, count: int) -> Published:
        """The first ids of a keyed batch, from its record."""
        subject = self._bp.subjects.record(key)
        found = await batch_get(self._bp.require(), self._bp.stream, {"multi_last": [subject]})
        if not found:
            raise BackplaneUnavailable(
                "this Idempotency-Key was used by a publish whose record is gone; use a new key"
            )
        record = int((found[0].headers or {})["Nats-Sequence"])
        channels: list[str] = orjson.loads(found[0].data)
        first = record - len(channels)
        ids = [event_id(self._bp.base + first + i, c) for i, c in enumerate(channels)]
        return Published(ids=ids, replayed=True)
