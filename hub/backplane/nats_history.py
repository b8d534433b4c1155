"""NATS backplane: history pages and resets (see ``hub.backplane.nats`` points 3 and 4)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from hub.backplane import History, Reset
from hub.backplane.nats_connection import Connection
from hub.backplane.nats_link import (
    NEWEST,
    api,
    batch_get,
    is_closing,
    is_marker,
    message_event,
    prev_of,
    stamp,
)
from hub.backplane.tombstones import Tombstones
from hub.events import Event, event_id

__all__ = ["HISTORY_COUNT", "Pages"]

#: Messages a history page reads per channel at most (a batched direct get).
HISTORY_COUNT = 500
#: Channels listed by ``channels()`` at most.
MAX_LISTED_CHANNELS = 10_000


class Pages:
    def __init__(self, connection: Connection, tombstones: Tombstones) -> None:
        self._bp = connection
        self._tombstones = tombstones

    async def read(
        self, channels: Sequence[str], after: int | None, max_bytes: int, continued: bool
    ) -> History:
        # A deleted channel's messages before its tombstone stay until max_age removes them
        # (a reader still behind them must deliver them: nats_private), but none is served.
        # A tombstone the reader has not met yet is after its frontier: what is before it may
        # still be served, since the live feed brings the deletion after it.
        gone = self._tombstones.among(channels)
        if gone:
            channels = [c for c in channels if c not in gone]
        state = await self._bp.stream_state()
        last = int(state["last_seq"])
        if after is None or continued:
            return await self._page(
                channels, (after or self._bp.base) - self._bp.base, last, max_bytes
            )
        start = after - self._bp.base
        reset: str | None = None
        if start > last or start < 1:
            reset = "unknown-id"
        else:
            oldest = await asyncio.gather(*(self._oldest(c) for c in channels))
            floor: int | None = None
            for prev in oldest:
                if prev is None:  # holds nothing: what it had expired by age
                    floor = await self.age_floor() if floor is None else floor
                    prev = floor
                if prev > start:
                    reset = "expired"
                    break
        if reset is None:
            return await self._page(channels, start, last, max_bytes)
        page = await self._page(channels, 0, last, max_bytes)
        oldest_id = page.events[0].id if page.events else None
        return History(page.events, Reset(reset, oldest_id), page.more)

    async def position_at(self, when: float) -> int | None:
        """``Since``: the message before the first one stored at or after ``when`` (a direct
        get by time over every channel's subject; sequences are in store order), when it is
        retained: then it was stored before ``when``, and the history's resets from it are
        exact. When it was removed, its time is unknown (it may have been one of the events
        asked for): the stream's base, whose reset the stream reports as "expired"."""
        nc = self._bp.require()
        request = {"start_time": _iso(when), "next_by_subj": f"{self._bp.subjects.prefix}.*"}
        found = await batch_get(nc, self._bp.stream, request | {"batch": 1})
        if not found:
            return None
        seq = int((found[0].headers or {})["Nats-Sequence"])
        if seq > 1:
            before = await batch_get(nc, self._bp.stream, {"seq": seq - 1, "batch": 1})
            if before and int((before[0].headers or {})["Nats-Sequence"]) == seq - 1:
                return self._bp.base + seq - 1
        return self._bp.base

    async def _oldest(self, channel: str) -> int | None:
        """The previous-message header of the channel's oldest retained message (None: none)."""
        subject = self._bp.subjects.of(channel)
        # Past history_ttl a message counts as gone, though JetStream removes it a moment later.
        request = {
            "start_time": _iso(time.time() - self._bp.ttl),
            "next_by_subj": subject,
            "batch": 1,
        }
        found = await batch_get(self._bp.require(), self._bp.stream, request)
        if not found:
            return None
        headers = found[0].headers or {}
        return prev_of(headers, int(headers["Nats-Sequence"]))

    async def age_floor(self) -> int:
        """The highest sequence that may be older than ``history_ttl``: every message a channel
        that holds nothing may have had is at or below it. (The hub's clock stands in for the
        server's; a few seconds of margin count against clock skew.)"""
        # The last sequence first: a message stored after the search below is young, and must
        # not count; if the search finds nothing young, every message up to it is old.
        last = int((await self._bp.stream_state())["last_seq"])
        since = time.time() - self._bp.ttl + min(5.0, self._bp.ttl / 4)
        request = {"start_time": _iso(since), "next_by_subj": f"{self._bp.subjects.prefix}.*"}
        found = await batch_get(self._bp.require(), self._bp.stream, request | {"batch": 1})
        if found:
            return min(last, int((found[0].headers or {})["Nats-Sequence"]) - 1)
        return last

    async def _page(
        self, channels: Sequence[str], start: int, last: int, max_bytes: int
    ) -> History:
        """Events above sequence ``start`` up to ``last``, merged, cut as in Redis's pages."""
        nc = self._bp.require()
        # Each channel's read is bounded in count and in bytes (at least one message comes).
        requests = [
            {"seq": start + 1, "next_by_subj": self._bp.subjects.of(c), "batch": HISTORY_COUNT}
            | {"max_bytes": max_bytes}
            for c in channels
        ]
        replies = await asyncio.gather(*(batch_get(nc, self._bp.stream, r) for r in requests))
        cutoff = time.time() - self._bp.ttl
        cut: int | None = None
        read: list[tuple[int, str, Any]] = []
        for channel, found in zip(channels, replies, strict=True):
            kept = [m for m in found if int((m.headers or {})["Nats-Sequence"]) <= last]
            if kept and len(kept) == len(found):
                # The read stopped before ``last``: if the channel holds more after it, later
                # events of the other channels must wait for the next page.
                headers = kept[-1].headers or {}
                if int(headers.get("Nats-Num-Pending", "0")) > 0:
                    at = int(headers["Nats-Sequence"])
                    cut = at if cut is None else min(cut, at)
            # A tombstone or a close marker is no event (its Ssehub-Prev of 0 asks for no reset).
            kept = [
                m
                for m in kept
                if stamp((m.headers or {})["Nats-Time-Stamp"]) >= cutoff
                and not is_marker(m.headers)
            ]
            read += [(int((m.headers or {})["Nats-Sequence"]), channel, m) for m in kept]
        read.sort(key=lambda item: item[0])
        events: list[Event] = []
        size = 0
        more = False
        for seq, channel, msg in read:
            if cut is not None and seq > cut:
                more = True
                break
            event = message_event(
                channel,
                self._bp.base + seq,
                msg.data,
                stamp((msg.headers or {})["Nats-Time-Stamp"]),
            )
            if events and size + len(event.frame) > max_bytes:
                more = True
                break
            events.append(event)
            size += len(event.frame)
        # A cut channel holds more after the cut, whether or not the page reached it.
        return History(events, more=more or cut is not None)

    async def channels(self) -> dict[str, str]:
        """Channels with retained events and their newest ids (``Catalog``)."""
        nc = self._bp.require()
        request = {"subjects_filter": f"{self._bp.subjects.prefix}.*"}
        info = await api(nc, f"$JS.API.STREAM.INFO.{self._bp.stream}", request)
        subjects = list(info["state"].get("subjects") or {})[:MAX_LISTED_CHANNELS]
        first = max(1, int(info["state"].get("first_seq") or 1))
        found: dict[str, str] = {}
        closed: list[tuple[str, int]] = []  # a closed channel's last message is its marker
        # 100 subjects a read, all at once: one after the other, a hub busy publishing (a
        # thousand demo jobs) took seconds over a thousand channels, and a read past
        # API_TIMEOUT made the list a 503
        lasts = [
            batch_get(nc, self._bp.stream, {"multi_last": subjects[at : at + 100]})
            for at in range(0, len(subjects), 100)
        ]
        for reply in await asyncio.gather(*lasts):
            for msg in reply:
                headers = msg.headers or {}
                channel = self._bp.subjects.channel(headers["Nats-Subject"])
                seq = int(headers["Nats-Sequence"])
                if channel is not None and is_closing(headers):
                    newest = headers.get(NEWEST)
                    if newest is None:  # a marker that does not say: read below
                        closed.append((headers["Nats-Subject"], seq))
                    elif int(newest) >= first:  # (0: none; below the first: expired)
                        found[channel] = event_id(self._bp.base + int(newest), channel)
                elif channel is not None and not is_marker(headers):
                    found[channel] = event_id(self._bp.base + seq, channel)
        # Its newest event, before the marker: one read each, 50 at once (closed Durable
        # Streams make many; one after the other, a busy server made the list take seconds).
        for at in range(0, len(closed), 50):
            reads = [
                batch_get(nc, self._bp.stream, {"multi_last": [subject], "up_to_seq": seq - 1})
                for subject, seq in closed[at : at + 50]
            ]
            for msg in (msg for reply in await asyncio.gather(*reads) for msg in reply):
                headers = msg.headers or {}
                channel = self._bp.subjects.channel(headers["Nats-Subject"])
                if channel is not None and not is_marker(headers):
                    found[channel] = event_id(
                        self._bp.base + int(headers["Nats-Sequence"]), channel
                    )
        return found


def _iso(when: float) -> str:
    """Seconds since the epoch as the RFC 3339 time a direct get's ``start_time`` takes."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(when)) + f".{int(when % 1 * 1e6):06d}Z"
