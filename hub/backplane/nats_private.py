"""NATS backplane: one-time tickets, channel deletion and closing (``Tickets``, ``Deletion``,
``Closing``).

A ticket is a message on ``P_ticket.<digest>`` of the hub's stream, holding its channels and
deadline, stored with a per-message TTL (``Nats-TTL``, whole seconds, rounded up), so JetStream
removes it by itself. Spending it reads it from the stream leader (not a direct get, which a
replica may answer before it has the ticket) and deletes it *by its sequence*: JetStream deletes
a sequence once, and answers "no message found" to every later delete of it, so of two
processes spending it at once exactly one gets the channels (compare-and-delete). The deadline
in the message covers what the whole-second TTL rounds up; it is read with the spending
process's clock, so hub processes whose clocks disagree by more than that fraction disagree on
its last moments only (JetStream's TTL, on the server's clock, bounds it anyway).

A deletion is a tombstone: a message on the channel's own subject with the ``Ssehub-Deleted``
header and no body. The channel's older messages are not purged: a reader still behind them
must deliver them before the tombstone (they were acknowledged before the deletion), so they
stay, never served again (``nats_history`` leaves deleted channels out), until the stream's
``max_age`` removes them with the tombstone. It is published with
``Nats-Expected-Last-Subject-Sequence`` = the channel's last message as read from the stream
leader just before, which makes "no history"
(404) and "deleted already" (410) exact. If a publish or another deletion came in between, the
tombstone is published again without that condition (waiting for a quiet moment on a busy
channel could fail for ever), and the message just before it says whether another deletion
came first (then the answer is "deleted already"; the second tombstone only ends a few
milliseconds after the first). The stream's ``max_age`` (``history_ttl``) removes the tombstone
when its time is over, so it needs no expiry of its own. Why this is atomic enough:

- every publish names the channel's last sequence (``hub.backplane.nats`` point 4), so once the
  tombstone is stored, a publish from any process that has not seen it is refused by JetStream
  (wrong last sequence); the publisher then reads the channel's last message, finds the
  tombstone and raises ``ChannelDeleted``. A publish is therefore either stored before the
  tombstone (it was acknowledged, and is delivered before the deletion, as a publish just
  before Redis's ``DELETE`` script) or refused whole; it is never stored after it.
- a process that has seen the tombstone refuses publishes to the channel without asking NATS
  (``hub.backplane.tombstones``, a local map with expiry) after one read of the channel's last
  message (``nats_publish``: it may hold a Durable Stream created again since).
- every process's reader meets the tombstone in stream-sequence order with the events of the
  channels it follows (its consumer filters on the channel's subject), and tells its listener
  (``Hub.deleted``); a join of new channels reads their last messages after reading its
  frontier, so a tombstone at or below the frontier is known before ``follow`` returns. Hence
  ``deleted()`` after ``follow`` names every deletion the reader will not deliver. (That read
  is a batched direct get, like history pages: on a replicated stream a lagging replica may
  answer it, and a subscriber joining in the very moment of a deletion may then miss its
  ``event: close``; its stream stays open and quiet, since publishes are refused.)
- a delete whose answer was lost (NATS away: the client gets 503) may have stored its
  tombstone; the retry finds it and answers "deleted already".

The tombstone's ``Ssehub-Prev`` is ``0``: it names no previous message, so a resume of a stream
that also names live channels needs no reset for the deleted one, and no reader sees a gap.

A close is a close marker, the same way: a message with the ``Ssehub-Closed`` header and no
body, published with the expected last subject sequence (or, raced, without it, the message
before it then saying whether a deletion or another close came first). Every argument above
holds for it: a publish is stored before it or refused (the publisher finds the marker and
raises ``ChannelClosed``), every reader meets it in order (``Hub.closed``), a join finds it as
the channel's last message. The history before it stays served (``nats_history`` skips the
marker only) until ``max_age``, which also ends the marker.

On a Durable Stream's channel, a deletion or a close also goes into the stream's record
(``nats_stream_io.settle``), so the stream stays deleted or closed after its marker expires.
"""

from __future__ import annotations

import base64
import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import orjson

from hub.backplane.nats_connection import Connection
from hub.backplane.nats_link import (
    CLOSED,
    GONE,
    NEWEST,
    PREV,
    UNAVAILABLE,
    ApiError,
    api,
    batch_get,
    is_marker,
    stamp,
)
from hub.backplane.nats_publish import Publisher
from hub.backplane.nats_stream_io import settle
from hub.backplane.tombstones import Tombstones

__all__ = ["PrivateChannels"]

log = logging.getLogger("hub.backplane")

WRONG_LAST = 10071
NO_MESSAGE = 10037
NOT_FOUND = 10057


class Stored:
    """A message as ``STREAM.MSG.GET`` answers it (base64 headers and body)."""

    __slots__ = ("data", "headers", "seq", "time")

    def __init__(self, message: dict[str, Any]) -> None:
        self.seq = int(message["seq"])
        self.data = base64.b64decode(message.get("data") or "")
        self.time = stamp(str(message["time"]))
        self.headers: dict[str, str] = {}
        block = base64.b64decode(message.get("hdrs") or "").decode(errors="replace")
        for line in block.split("\r\n")[1:]:  # after the NATS/1.0 status line
            name, colon, value = line.partition(":")
            if colon:
                self.headers[name.strip()] = value.strip()


class PrivateChannels:
    """Tickets and tombstones go through the ``publisher`` (its requests are withdrawn when they
    time out; it learns of each tombstone stored here)."""

    def __init__(
        self,
        connection: Connection,
        tombstones: Tombstones,
        publisher: Publisher,
        closings: Tombstones,
    ) -> None:
        self._bp = connection
        self._tombstones = tombstones
        self._closings = closings
        self._publisher = publisher

    # -- tickets -----------------------------------------------------------------------------

    async def issue(self, ticket: str, channels: Sequence[str], ttl: float) -> None:
        body = orjson.dumps({"c": list(channels), "d": time.time() + ttl})
        headers = {"Nats-TTL": str(max(1, math.ceil(ttl)))}
        try:
            await self._publisher.send(self._bp.subjects.ticket(ticket), body, headers)
        except UNAVAILABLE as problem:
            raise self._bp.link.unavailable("requests", problem) from None

    async def spend(self, ticket: str) -> list[str] | None:
        stream = self._bp.stream
        try:
            found = await self._last(self._bp.subjects.ticket(ticket))
            if found is None:
                return None
            request = {"seq": found.seq, "no_erase": True}
            try:
                await api(self._bp.require(), f"$JS.API.STREAM.MSG.DELETE.{stream}", request)
            except ApiError as error:
                if error.code in (NOT_FOUND, NO_MESSAGE):  # spent (or expired) just now
                    return None
                raise
        except UNAVAILABLE as problem:
            raise self._bp.link.unavailable("requests", problem) from None
        try:
            kept = orjson.loads(found.data)
            channels, deadline = kept["c"], float(kept["d"])
        except (ValueError, KeyError, TypeError):
            return None  # not one of ours
        if deadline <= time.time() or not isinstance(channels, list):
            return None
        return [str(c) for c in channels]

    # -- deletion ----------------------------------------------------------------------------

    async def delete(self, channel: str, anyway: bool) -> bool | None:
        try:
            return await self._delete(channel, anyway)
        except UNAVAILABLE as problem:
            raise self._bp.link.unavailable("requests", problem) from None

    async def _delete(self, channel: str, anyway: bool) -> bool | None:
        bp = self._bp
        subject = bp.subjects.of(channel)
        last = await self._last(subject)
        if last is not None and GONE in last.headers and self._tombstones.mark(channel, last.time):
            return None
        if last is None and not anyway:
            return False
        expect = "Nats-Expected-Last-Subject-Sequence"
        claim = {GONE: "1", PREV: "0", expect: str(last.seq if last is not None else 0)}
        beaten = False
        try:
            tombstone = int((await self._publisher.send(subject, b"", claim))["seq"])
        except ApiError as error:
            if error.code != WRONG_LAST:
                raise
            # Published on (or deleted) meanwhile. Trying again for a quiet moment could fail
            # for ever on a busy channel; it holds history now, so the tombstone goes in as it
            # is, and the message just before it says whether another deletion came first.
            del claim[expect]
            tombstone = int((await self._publisher.send(subject, b"", claim))["seq"])
            request = {"multi_last": [subject], "up_to_seq": tombstone - 1}
            for msg in await batch_get(bp.require(), bp.stream, request):
                headers = msg.headers or {}
                beaten = GONE in headers and self._tombstones.mark(
                    channel, stamp(headers["Nats-Time-Stamp"])
                )
        self._tombstones.mark(channel, time.time())
        self._publisher.stored(channel, tombstone)
        await self._settle(channel, tombstone, gone=True)
        return None if beaten else True

    async def close(self, channel: str) -> bool | None:
        try:
            return await self._close(channel)
        except UNAVAILABLE as problem:
            raise self._bp.link.unavailable("requests", problem) from None

    async def _close(self, channel: str) -> bool | None:
        bp = self._bp
        subject = bp.subjects.of(channel)
        last = await self._last(subject)
        if last is not None and GONE in last.headers and self._tombstones.mark(channel, last.time):
            return None
        if last is not None and CLOSED in last.headers and self._closings.mark(channel, last.time):
            return False
        expect = "Nats-Expected-Last-Subject-Sequence"
        claim = {CLOSED: "1", PREV: "0", expect: str(last.seq if last is not None else 0)}
        # the newest event it closes on: the last message, unless that is a marker (a create
        # marker, an expired tombstone), and only while the expectation holds (else: unknown)
        claim[NEWEST] = str(last.seq if last is not None and not is_marker(last.headers) else 0)
        first: bool | None = True
        try:
            marker = int((await self._publisher.send(subject, b"", claim))["seq"])
        except ApiError as error:
            if error.code != WRONG_LAST:
                raise
            # Published on, deleted or closed meanwhile: in it goes as it is, and the message
            # just before it says whether a deletion or a close came first.
            del claim[expect], claim[NEWEST]
            marker = int((await self._publisher.send(subject, b"", claim))["seq"])
            request = {"multi_last": [subject], "up_to_seq": marker - 1}
            for msg in await batch_get(bp.require(), bp.stream, request):
                headers = msg.headers or {}
                when = stamp(headers["Nats-Time-Stamp"])
                if GONE in headers and self._tombstones.mark(channel, when):
                    first = None
                elif CLOSED in headers and self._closings.mark(channel, when):
                    first = False
        if first is not None:
            self._closings.mark(channel, time.time())
            await self._settle(channel, marker, gone=False)
        self._publisher.stored(channel, marker)
        return first

    async def _settle(self, channel: str, marker: int, *, gone: bool) -> None:
        """A Durable Stream on the channel records the deletion or close too; the marker is
        stored already, so a failure here does not fail it: the stream's next read repairs it."""
        try:
            await settle(self._bp, self._publisher, channel, marker, gone=gone)
        except UNAVAILABLE as problem:
            log.warning(
                "the stream on %s will record its %s later: %s",
                channel,
                "deletion" if gone else "close",
                problem,
            )

    def closed(self, channels: Sequence[str]) -> list[str]:
        return self._closings.among(channels)

    async def _last(self, subject: str) -> Stored | None:
        """The subject's last message, from the stream leader (a direct get may be answered by
        a replica that lags)."""
        request = {"last_by_subj": subject}
        try:
            found = await api(
                self._bp.require(), f"$JS.API.STREAM.MSG.GET.{self._bp.stream}", request
            )
        except ApiError as error:
            if error.code == NO_MESSAGE:
                return None
            raise
        return Stored(found["message"])

    def deleted(self, channels: Sequence[str]) -> list[str]:
        return self._tombstones.among(channels)
