"""NATS backplane: live delivery. One consumer per process, filtered on every followed channel.

JetStream delivers a consumer's messages in stream-sequence order, which is position order, so
one consumer over all followed channels keeps the order across channels. Its filter cannot grow
in place without skipping what it already passed, so a join (like the Redis reader's ``_join``)
happens between two reads, by the reader alone:

- the frontier of the new channels is the stream's last sequence ``F``, read at the join;
- the new consumer starts right after ``G``, the last sequence the old one delivered, filtered
  on the old channels and the new ones;
- a channel's messages at or below its cursor (``F`` for a new channel, the last delivered for
  an old one) are skipped.

So every old channel goes on from where it was, every new one starts exactly above ``F``, and
nothing is delivered twice. The same restart from ``G`` recovers from any failure (NATS away,
the consumer lost with a restart of the server). A message whose ``Ssehub-Prev`` is above its
channel's cursor shows that a message in between was removed before it could be read (trimmed
while this process was cut off): the channel is reported ``lost``.

A deleted channel's tombstone (``hub.backplane.nats_private``) comes in the same order: the
events before it are delivered, then the listener is told ``deleted``. A join reads the new
channels' last messages after its frontier ``F``, so a tombstone at or below ``F`` (which the
consumer skips) is known to ``deleted()`` before ``follow`` returns (a create marker of
``nats_streams`` is no event: it undoes the marks of a channel's earlier life).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from hub.backplane import Listener
from hub.backplane.following import Following
from hub.backplane.lifecycle import retry_forever
from hub.backplane.nats_connection import Connection
from hub.backplane.nats_link import (
    UNAVAILABLE,
    api,
    is_closing,
    is_created,
    is_floor,
    is_tombstone,
    last_markers,
    mark_ends,
    message_event,
    prev_of,
)
from hub.backplane.tombstones import Tombstones
from hub.events import Event

__all__ = ["Reader"]

log = logging.getLogger("hub.backplane")

#: Messages asked for by one pull request, and how long it waits at most (seconds).
PULL_BATCH = 1000
PULL_EXPIRES = 5.0
#: Followed channels filtered on by name at most; beyond, the consumer takes every channel.
MAX_FILTERED = 256


class Reader:
    """``seen(channel, sequence)``: told of every message read (the publisher's cache of each
    channel's last sequence follows it)."""

    def __init__(
        self,
        connection: Connection,
        tombstones: Tombstones,
        seen: Callable[[str, int], None],
        closings: Tombstones,
    ) -> None:
        self._bp = connection
        self._tombstones = tombstones
        self._closings = closings
        self._seen = seen
        self.listener: Listener | None = None
        self._following = Following()
        # followed channel -> the stream sequence delivered up to
        self.cursors = self._following.cursors
        self._wake = self._following.wake
        self._delivered = 0  # G: the last sequence the consumer delivered
        self._consumer: str | None = None
        self._sub: Subscription | None = None
        self._stale = True
        self._pulling = False
        self._left = 0  # messages the current pull request may still bring
        self._suspect: set[str] = set()  # followed while reading failed: may have missed some

    async def follow(self, channels: Sequence[str]) -> int:
        waits, _ = self._following.ask(channels)
        if not waits:
            return 0
        try:
            self._bp.require()
        except UNAVAILABLE as problem:
            raise self._bp.link.unavailable("connection", problem) from None
        self._wake.set()
        return await self._following.frontier(waits)

    def unfollow(self, channel: str) -> None:
        self._following.unfollow(channel)
        self._suspect.discard(channel)

    def restart(self) -> None:
        """After a reconnect: a pull request of the old connection may never be answered, so
        read again through a new consumer, from where delivery stopped."""
        self._stale = True
        self._suspect |= set(self.cursors)
        self._wake.set()

    def cancel_joins(self) -> None:
        self._following.cancel()

    async def read_forever(self) -> None:
        """Read until cancelled; a failure is retried from where delivery stopped."""
        await retry_forever(
            self._round,
            name="NATS reader",
            link=self._bp.link,
            witness="reader",
            errors=UNAVAILABLE,
            backoff=lambda failures: min(1.0, 0.05 * 2**failures),
            failed=self._failed,
        )

    async def _round(self) -> None:
        self._wake.clear()
        if self._following.asked:
            await self._join()
        if not self.cursors:
            self._bp.link.regained("reader")
            await self._wake.wait()
            return
        if self._stale:
            await self._create()
        self._dispatch(await self._pull())

    def _failed(self, problem: BaseException) -> None:
        """Read again through a new consumer, from where delivery stopped; the channels may
        have missed messages meanwhile; the followers waiting for a join get a 503."""
        self._suspect |= set(self.cursors)
        self._stale = True
        self._following.fail(self._bp.link.unavailable("reader", problem))

    async def _join(self) -> None:
        channels = self._following.joining()
        last = int((await self._bp.stream_state())["last_seq"])
        await self._find_tombstones(channels)
        if not self.cursors:
            self._delivered = last
        for channel in channels:
            self._following.joined(channel, last, self._bp.base + last)
        self._stale = True

    async def _find_tombstones(self, channels: list[str]) -> None:
        """Which joining channels were deleted or closed, from their last messages, read after
        the frontier: one stored after it is delivered too (the hub ends its streams once)."""
        bp = self._bp
        found = await last_markers(bp.require(), bp.stream, bp.subjects, channels)
        mark_ends(found, self._tombstones, self._closings)

    async def _create(self) -> None:
        nc = self._bp.require()
        await self._drop_consumer()
        self._sub = await nc.subscribe(nc.new_inbox())
        config: dict[str, Any] = {
            "deliver_policy": "by_start_sequence",
            "opt_start_seq": self._delivered + 1,
            "ack_policy": "none",
            "filter_subjects": self._filter(),
            "inactive_threshold": int(30e9),
            "mem_storage": True,
            "num_replicas": 1,
            "max_waiting": 4,
        }
        stream = self._bp.stream
        answer = await api(
            nc, f"$JS.API.CONSUMER.CREATE.{stream}", {"stream_name": stream, "config": config}
        )
        self._consumer = str(answer["name"])
        self._stale = False
        self._pulling = False

    def _filter(self) -> list[str]:
        """The followed channels' subjects; past ``MAX_FILTERED`` of them, all channels (the
        dispatch drops what is not followed), so a join never sends a huge consumer config."""
        if len(self.cursors) > MAX_FILTERED:
            return [f"{self._bp.subjects.prefix}.*"]
        return [self._bp.subjects.of(c) for c in self.cursors]

    async def _drop_consumer(self) -> None:
        sub, self._sub = self._sub, None
        name, self._consumer = self._consumer, None
        if sub is not None:
            with contextlib.suppress(*UNAVAILABLE):
                await sub.unsubscribe()
        nc = self._bp.nc
        if name is not None and nc is not None and nc.is_connected:
            with contextlib.suppress(*UNAVAILABLE):
                await api(nc, f"$JS.API.CONSUMER.DELETE.{self._bp.stream}.{name}")

    async def _pull(self) -> list[Msg]:
        """The messages available now, waiting for the first (or a wake-up: then none)."""
        nc = self._bp.require()
        sub = self._sub
        assert sub is not None and self._consumer is not None
        if not self._pulling:
            request = {"batch": PULL_BATCH, "expires": int(PULL_EXPIRES * 1e9)}
            subject = f"$JS.API.CONSUMER.MSG.NEXT.{self._bp.stream}.{self._consumer}"
            await nc.publish(subject, orjson.dumps(request), reply=sub.subject)
            self._pulling = True
            self._left = PULL_BATCH
        first = asyncio.ensure_future(sub.next_msg(timeout=PULL_EXPIRES + 3))
        woken = asyncio.ensure_future(self._wake.wait())
        try:
            done, _ = await asyncio.wait({first, woken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            if not first.done():
                first.cancel()
        if first not in done:
            with contextlib.suppress(BaseException):
                await first
            return []
        messages = [first.result()]
        while sub.pending_msgs > 0 and len(messages) < PULL_BATCH:
            messages.append(await sub.next_msg(timeout=1))
        return messages

    def _dispatch(self, messages: list[Msg]) -> None:
        subjects = self._bp.subjects
        events: list[Event] = []
        for msg in messages:
            status = (msg.headers or {}).get("Status")
            if status is not None:
                if status in ("404", "408"):
                    self._pulling = False
                elif status == "409":
                    self._pulling = False
                    self._stale = True
                continue
            self._left -= 1
            if self._left <= 0:  # the pull request is fulfilled: no status ends it
                self._pulling = False
            meta = msg.metadata
            seq = meta.sequence.stream
            self._delivered = max(self._delivered, seq)
            channel = subjects.channel(msg.subject)
            cursor = self.cursors.get(channel) if channel is not None else None
            if channel is None or cursor is None or seq <= cursor:
                continue
            if is_created(msg.headers):  # a Durable Stream (re)created: no event, no gap
                self._tombstones.lift(channel)
                self._closings.lift(channel)
                self.cursors[channel] = seq
                continue
            if is_tombstone(msg.headers) or is_closing(msg.headers):
                closed = not is_tombstone(msg.headers)
                ends = self._closings if closed else self._tombstones
                ends.mark(channel, meta.timestamp.timestamp())
                self.cursors[channel] = seq
                self._suspect.discard(channel)
                if self.listener is not None:
                    if events:  # those stored before it come first
                        self.listener.deliver(events)
                        events = []
                    if closed:
                        self.listener.closed(channel)
                    else:
                        self.listener.deleted(channel)
                continue
            # An age floor above the cursor is a gap only if this process may have missed
            # messages (it was cut off since): connected, it reads each message long before
            # history_ttl removes it, and a floor only bounds what may have been.
            gap = prev_of(msg.headers, seq) > cursor
            if gap and is_floor(msg.headers):
                gap = channel in self._suspect
            self._suspect.discard(channel)
            if gap and self.listener is not None:
                log.warning("history of %s was trimmed before it could be read", channel)
                self.listener.lost(channel)
            self.cursors[channel] = seq
            self._seen(channel, seq)
            events.append(
                message_event(channel, self._bp.base + seq, msg.data, meta.timestamp.timestamp())
            )
        if events and self.listener is not None:
            self.listener.deliver(events)
