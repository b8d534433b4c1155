"""One open event stream: its state, its held events, its floor, and its replay.

A subscription goes through three states, and only forward:

1. ``SYNCING``: registered on its channels *before* the history is read, so every live event
   that arrives meanwhile is held, not lost. What it holds is bounded by ``max_pending_bytes``:
   past that it is a slow reader and is closed (it resumes later with ``Last-Event-ID``).
2. ``LIVE``: the head is written (retry hint, ``reset`` if any, the history page by page, then
   the held events newer than the history), and live frames go to its socket. ``floor`` is the
   newest position it was sent; live events at or below it are skipped, so an event that was
   both in the history and live is sent once.
3. ``CLOSED``: forgotten by the hub; its handler returns.

This is the history/live merge without gap or duplicate, even while publishes race the replay:
whatever the history misses is held, and whatever both have is sent once. The history is read
in pages of about ``REPLAY_SLICE`` bytes and each page is written under back-pressure (the
outlet waits for the client to read), so a resume costs the hub a page and a socket buffer,
not the whole history it asked for.

A replay of *some* of the channels (``replay=<channel>``: a page that adds a job's channel to a
stream that already watches others) reads the history of those channels only, and only up to
the *cut*: the newest position the hub had received live when the subscription registered, or
the frontier of the channels ``follow`` joined, whichever is newer. Everything above the cut,
on every channel, reaches the subscription live (held meanwhile): the backplane delivers in
position order, so what it delivers after the registration is newer than what it delivered
before. After the history the floor is raised to the cut, so one floor suffices: the held
events pass in position order whatever their channel, and an event at or below the cut is
either in the history just written (a replayed channel) or older than the stream (the others).
Reading the replayed channels' history past the cut instead would move the floor above live
events of the other channels still on their way (Redis delivers with a lag), which would then
be skipped (lost) or arrive out of order.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import orjson

from hub import sse
from hub.backplane import BackplaneUnavailable, History, Reset
from hub.events import Event, parse_position

if TYPE_CHECKING:
    import asyncio

    from hub.hub import Hub
    from hub.outlet import Outlet

__all__ = ["RESET_EVENT", "State", "Subscription"]

RESET_EVENT = "reset"
#: Bytes of history read and written at a time during a replay.
REPLAY_SLICE = 256 * 1024


class State(enum.Enum):
    SYNCING = "syncing"
    LIVE = "live"
    CLOSED = "closed"


class Subscription:
    """One stream (one connection) on one or more channels; created by ``Hub.subscribe``."""

    __slots__ = (
        "_hub",
        "_partial",
        "_start",
        "channels",
        "done",
        "floor",
        "held",
        "held_bytes",
        "outlet",
        "pending",
        "state",
    )

    def __init__(
        self,
        hub: Hub,
        channels: tuple[str, ...],
        done: asyncio.Future[None],
        asked: tuple[str | None, tuple[str, ...]],
    ) -> None:
        self._hub = hub
        # what the client asked for (Last-Event-ID, the channels to replay from the start);
        # then the first history page
        self._start: tuple[str | None, tuple[str, ...]] | History | None = asked
        # while replaying some of the channels only: those channels and the cut
        self._partial: tuple[tuple[str, ...], int] | None = None
        self.channels = channels
        self.state = State.SYNCING
        # live events that arrived while syncing; a shared empty tuple until there is one, since
        # most subscriptions never hold anything and a list each is memory paid per stream
        self.held: list[Event] | tuple[()] = ()
        self.held_bytes = 0
        # frames queued for the next flush (and the subscription in the writer's dirty list once
        # there is one): the frame itself when there is one, a list from the second on, else
        # the shared empty tuple. Not a list each: an idle stream's empty list would be memory
        # paid per subscriber, and a list made per subscriber per event is a container the
        # garbage collector counts, so fan-out to 10k streams would start its collections
        # (whole-heap ones too) many times per event, which is the tail of the latency.
        self.pending: bytes | list[bytes] | tuple[()] = ()
        # newest position written; once live, live events at or below it are skipped
        self.floor = 0
        self.outlet: Outlet | None = None  # its connection, once the response is prepared
        self.done = done  # resolved when the hub ends the stream

    def is_closed(self) -> bool:
        """A call, not a field test that type checkers would narrow: the hub may close a
        subscription during any await."""
        return self.state is State.CLOSED

    # -- before the response headers ----------------------------------------------------------
    # A class with __aenter__/__aexit__ rather than an asynccontextmanager: the generator and
    # its frame would live as long as the stream, which is memory paid per subscriber.

    async def __aenter__(self) -> Subscription:
        try:
            await self._begin()
        except BaseException:
            self._hub.close(self)
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._hub.close(self)

    async def _begin(self) -> None:
        """Follow the channels and read the first history page; raises
        ``BackplaneUnavailable`` while the backplane is away (then nothing was sent)."""
        asked, self._start = self._start, None
        assert isinstance(asked, tuple), "a subscription is entered once"
        last_event_id, replay = asked
        feeds = self._hub.feeds(self.channels)
        if not feeds:
            return
        backplane = self._hub.backplane
        delivered = self._hub.delivered  # before any await: as it was at the registration
        # A subscription without history starts at the frontier: events at or below it may
        # predate the channels being followed, so none of them are sent.
        frontier = self.floor = await backplane.follow(feeds)
        replay = tuple(name for name in feeds if name in replay)
        if last_event_id is None and not replay:
            return
        self.floor = 0
        if last_event_id is None and len(replay) < len(feeds):
            cut = max(delivered, frontier)
            self._partial = (replay, cut)
            page = await backplane.history(replay, None, REPLAY_SLICE)
            self._start = _up_to(page, cut)
            return
        after = None if last_event_id is None else parse_position(last_event_id)
        first = await backplane.history(feeds, after, REPLAY_SLICE)
        if last_event_id is not None and after is None and first.reset is None:
            oldest = first.events[0].id if first.events else None
            first = History(first.events, Reset("unknown-id", oldest), first.more)
        if first.reset is None and after is not None:
            self.floor = after
        self._start = first

    # -- after the headers: head, replay, live ------------------------------------------------

    async def open(self, outlet: Outlet) -> None:
        """Write the head and the replay, then go live; returns once live or closed.

        It returns rather than waiting for the end itself: the caller awaits ``done``, so an
        idle stream keeps one coroutine frame (the handler's), not two.
        """
        hub = self._hub
        self.outlet = outlet  # so that a drop while syncing aborts the connection at once
        parts = [hub.retry_frame]
        page, self._start = self._start, None
        assert page is None or isinstance(page, History)
        if page is not None and page.reset is not None:
            parts.append(_reset_frame(page.reset))
        while page is not None:
            parts += self._take(page.events)
            if not await self._write(outlet, parts):
                hub.drop(self)  # a slow reader, as for live frames
            if self.is_closed():
                return
            parts = []
            if not page.more:
                break
            try:
                page = await self._next_page()
            except BackplaneUnavailable:
                # Unreadable mid-replay: end the stream; the client resumes from what it got.
                hub.close(self)
                return
        if self.is_closed():
            return
        if self._partial is not None:
            # everything above the cut comes live (see the module docstring)
            self.floor = max(self.floor, self._partial[1])
            self._partial = None
        parts += hub.ephemeral_frames(self.channels, time.time())
        parts += self._take(self.held)
        self.held = ()
        self.held_bytes = 0
        if parts and not await self._write(outlet, parts):
            hub.drop(self)
            return
        if self.is_closed():
            return
        self.state = State.LIVE
        hub.went_live(self)

    async def _next_page(self) -> History:
        history = self._hub.backplane.history
        if self._partial is None:
            feeds = self._hub.feeds(self.channels)
            return await history(feeds, self.floor, REPLAY_SLICE, continued=True)
        channels, cut = self._partial
        page = await history(channels, self.floor, REPLAY_SLICE, continued=True)
        return _up_to(page, cut)

    async def _write(self, outlet: Outlet, parts: list[bytes]) -> bool:
        config = self._hub.config
        return await outlet.write_replay(
            b"".join(parts), config.max_pending_bytes, config.heartbeat
        )

    def _take(self, events: Sequence[Event]) -> list[bytes]:
        """The frames of events newer than what was written; moves the write position."""
        frames = []
        last = self.floor
        for event in events:
            if event.position > last:
                frames.append(event.frame)
                last = event.position
        self.floor = last
        self._hub.metrics.events_delivered += len(frames)
        return frames


def _up_to(page: History, cut: int) -> History:
    """The page's events at or below the cut; no more pages once one passes it."""
    if not page.events or page.events[-1].position <= cut:
        return page
    kept = [event for event in page.events if event.position <= cut]
    return History(kept, page.reset, more=False)


def _reset_frame(reset: Reset) -> bytes:
    data = orjson.dumps({"reason": reset.reason, "oldest_id": reset.oldest_id}).decode()
    return sse.encode(RESET_EVENT, data)
