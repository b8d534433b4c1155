"""One open event stream: its state, its held events, its floor, and its replay.

A stream goes through three states, and only forward; its methods move it, nothing else writes
its fields (its output half, ``pending`` and ``sink``, is ``hub.writer.Output``'s):

1. ``SYNCING``: registered on its channels *before* the history is read, so every live event
   that arrives meanwhile is held (``hold``), not lost. What it holds is bounded by
   ``max_pending_bytes``: past that it is a slow reader and is cut off (it resumes later with
   ``Last-Event-ID``).
2. ``LIVE``: the head is written (retry hint, ``reset`` if any, the history page by page, then
   the held events newer than the history), and live frames go to its socket. ``floor`` is the
   newest position it was sent; live events at or below it are skipped, so an event that was
   both in the history and live is sent once.
3. ``CLOSED``: forgotten by the hub; whoever awaits ``done`` returns.

This is the history/live merge without gap or duplicate, even while publishes race the replay:
whatever the history misses is held, and whatever both have is sent once. The history is read
in pages of about ``REPLAY_SLICE`` bytes and each page is written under back-pressure (the sink
waits for the client to read), so a resume costs the hub a page and a socket buffer, not the
whole history it asked for. Held events are written until none arrived during the last write,
and the stream goes live with no await after that check: an event held while the last page was
draining is written, not left behind.

A replay of *some* of the channels (``replay=<channel>``: a page that adds a job's channel to a
stream that already watches others) reads the history of those channels only, and only up to
the *cut*: the newest position the hub had received live when the stream registered, or the
frontier of the channels ``follow`` joined, whichever is newer. Everything above the cut, on
every channel, reaches the stream live (held meanwhile): the backplane delivers in position
order, so what it delivers after the registration is newer than what it delivered before. After
the history the floor is raised to the cut, so one floor suffices: the held events pass in
position order whatever their channel, and an event at or below the cut is either in the
history just written (a replayed channel) or older than the stream (the others). Reading the
replayed channels' history past the cut instead would move the floor above live events of the
other channels still on their way (Redis delivers with a lag), which would then be skipped
(lost) or arrive out of order.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from hub.backplane import BackplaneUnavailable, History, Reset
from hub.backplane.since import Since
from hub.events import Event, parse_position
from hub.metrics import Metrics
from hub.view import View
from hub.writer import ANY_FLOOR, Output, Sink

if TYPE_CHECKING:
    import asyncio

__all__ = ["REPLAY_SLICE", "Reader", "Settings", "State", "Stream"]

#: Bytes of history read and written at a time during a replay.
REPLAY_SLICE = 256 * 1024


class Reader(Protocol):
    """The backplane's read side, all a stream needs of it (``hub.backplane.Backplane``)."""

    async def follow(self, channels: Sequence[str]) -> int: ...

    async def history(
        self, channels: Sequence[str], after: int | None, max_bytes: int, *, continued: bool = False
    ) -> History: ...


@dataclass(frozen=True, slots=True)
class Settings:
    """What every stream of a hub shares: one object, passed to each step, kept by none."""

    retry_ms: int
    max_pending: int  # bytes held, or unsent, past which a stream is a slow reader
    stall: float  # seconds a replay waits for the client to read a page (the heartbeat)
    metrics: Metrics


class State(enum.Enum):
    SYNCING = "syncing"
    LIVE = "live"
    CLOSED = "closed"


class Stream(Output):
    """One stream (one connection) on one or more channels; made by ``Hub.stream``."""

    __slots__ = ("_reading", "_start", "channels", "held", "held_bytes", "state", "view")

    def __init__(
        self,
        channels: tuple[str, ...],
        view: View,
        done: asyncio.Future[None],
        asked: tuple[str | None, tuple[str, ...], float | None],
    ) -> None:
        super().__init__(done)
        # what the client asked for (Last-Event-ID, the channels to replay from the start, the
        # time to replay from); then the first history page
        self._start: tuple[str | None, tuple[str, ...], float | None] | History | None = asked
        # while replaying: the channels read, the cut (ANY_FLOOR: none; else some channels are
        # replayed, up to it), the time events must be stored at or after (``since``; 0.0: any)
        self._reading: tuple[tuple[str, ...], int, float] | None = None
        self.channels = channels
        self.view = view
        self.state = State.SYNCING
        # live events that arrived while syncing; a shared empty tuple until there is one, since
        # most streams never hold anything and a list each is memory paid per stream
        self.held: list[Event] | tuple[()] = ()
        self.held_bytes = 0

    def is_closed(self) -> bool:
        """A call, not a field test that type checkers would narrow: the hub may close a
        stream during any await."""
        return self.state is State.CLOSED

    def hold(self, event: Event, limit: int) -> bool:
        """Keep a live event that arrived while syncing; False once past ``limit`` bytes."""
        held = self.held
        if isinstance(held, list):
            held.append(event)
        else:
            self.held = [event]
        self.held_bytes += len(event.frame)
        return self.held_bytes <= limit

    def _holds(self) -> bool:
        """A call, not a field test: events may be held during any await."""
        return bool(self.held)

    def end(self) -> None:
        """Closed: nothing more is written and ``done`` resolves (idempotent)."""
        self.state = State.CLOSED
        self.held = ()
        self.close_output()

    def without(self, name: str) -> bool:
        """Take one channel off the stream; False when it carried only that one."""
        if len(self.channels) == 1:
            return False
        self.channels = tuple(c for c in self.channels if c != name)
        return True

    # -- before the response headers ----------------------------------------------------------

    async def begin(
        self, reader: Reader, feeds: tuple[str, ...], delivered: int, times: Since | None = None
    ) -> None:
        """Follow the channels with history (``feeds``) and read the first history page; raises
        ``BackplaneUnavailable`` while the backplane is away (then nothing was sent).
        ``delivered``: the newest position the hub received live when the stream registered;
        ``times``: the backplane's positions by time, for ``since`` (None: read from the start)."""
        asked, self._start = self._start, None
        assert isinstance(asked, tuple), "a stream begins once"
        last_event_id, replay, since = asked
        if not feeds:
            return
        # A stream without history starts at the frontier: events at or below it may predate
        # the channels being followed, so none of them are sent.
        frontier = self.floor = await reader.follow(feeds)
        replay = tuple(name for name in feeds if name in replay)
        if last_event_id is None and since is not None:
            await self._begin_since(reader, feeds, since, times)
            return
        if last_event_id is None and not replay:
            return
        self.floor = 0
        if last_event_id is None and len(replay) < len(feeds):
            cut = max(delivered, frontier)
            self._reading = (replay, cut, 0.0)
            page = await reader.history(replay, None, REPLAY_SLICE)
            self._start = _up_to(page, cut)
            return
        self._reading = (feeds, ANY_FLOOR, 0.0)
        after = None if last_event_id is None else parse_position(last_event_id)
        first = await reader.history(feeds, after, REPLAY_SLICE)
        if last_event_id is not None and after is None and first.reset is None:
            oldest = first.events[0].id if first.events else None
            first = History(first.events, Reset("unknown-id", oldest), first.more)
        if first.reset is None and after is not None:
            self.floor = after
        self._start = first

    async def _begin_since(
        self, reader: Reader, feeds: tuple[str, ...], since: float, times: Since | None
    ) -> None:
        """``since``: the history after ``Since.position_at`` (events stored before the time
        skipped by ``_take``); nothing stored since: live. A reset here means the history does
        not reach back to that time: "expired", whatever the backplane's reason."""
        if (after := 0 if times is None else await times.position_at(since)) is None:
            return
        self.floor = 0
        self._reading = (feeds, ANY_FLOOR, since)
        first = await reader.history(feeds, after or None, REPLAY_SLICE)
        if first.reset is not None:
            first = History(first.events, Reset("expired", first.reset.oldest_id), first.more)
        elif after:
            self.floor = after
        self._start = first

    # -- after the headers: head, replay, live ------------------------------------------------

    async def replay(
        self, reader: Reader, sink: Sink, gone: Sequence[str], settings: Settings
    ) -> list[bytes] | None:
        """Write the head (a close frame for each channel ``gone``, deleted before the stream
        began, then the retry hint) and the history page by page (read from ``reader``).

        Returns what is left to write (the head, when there was no history), or None when the
        stream was closed meanwhile or is a slow reader (cut off).
        """
        self.attach(sink)  # so that a drop while syncing aborts the connection at once
        page, self._start = self._start, None
        assert page is None or isinstance(page, History)
        fmt = self.view.format
        parts = [*map(fmt.close, gone), fmt.head(settings.retry_ms)]
        if page is not None and page.reset is not None:
            parts.append(fmt.reset(page.reset))
        while page is not None:
            parts += self._take(page.events, settings)
            if not await self._write(parts, settings):
                return None
            parts = []
            if not page.more:
                break
            try:
                page = await self._next_page(reader)
            except BackplaneUnavailable:
                # Unreadable mid-replay: end the stream; the client resumes from what it got.
                self.end()
                return None
        if self._reading is not None and self._reading[1] != ANY_FLOOR:
            # everything above the cut comes live (see the module docstring)
            self.floor = max(self.floor, self._reading[1])
        self._reading = None
        return parts

    async def catch_up(self, parts: list[bytes], settings: Settings) -> bool:
        """Write ``parts`` and the held events until none arrived meanwhile; then LIVE (the
        caller moves the stream to its channels' live streams before its next await). False:
        closed meanwhile, or a slow reader (cut off)."""
        while True:
            held, self.held = self.held, ()
            self.held_bytes = 0
            parts += self._take(held, settings)
            if parts and not await self._write(parts, settings):
                return False
            if not self._holds():  # held while that write waited for the client
                break
            parts = []
        self.state = State.LIVE
        self.open_output()
        return True

    async def _next_page(self, reader: Reader) -> History:
        assert self._reading is not None
        channels, cut, _ = self._reading
        page = await reader.history(channels, self.floor, REPLAY_SLICE, continued=True)
        return _up_to(page, cut)

    async def _write(self, parts: list[bytes], settings: Settings) -> bool:
        """One write of the head under back-pressure; False (and cut off) for a slow reader."""
        if self.is_closed():
            return False
        sink = self.sink
        if sink is None:
            return False
        if not await sink.write_head(b"".join(parts), settings.max_pending, settings.stall):
            settings.metrics.subscribers_dropped += 1
            self.cut_off()
            self.end()
            return False
        return not self.is_closed()

    def _take(self, events: Sequence[Event], settings: Settings) -> list[bytes]:
        """The frames of events newer than what was written, stored at or after ``since`` and
        passing the view's filter; moves the write position past all of them."""
        frames = []
        last = self.floor
        view = self.view
        encode, test = view.encode, (view.filter.passes if view.filter is not None else None)
        since = self._reading[2] if self._reading is not None else 0.0
        for event in events:
            if event.position > last:
                last = event.position
                if event.published_at >= since and (test is None or test(event)):
                    frames.append(encode(event))
        self.floor = last
        settings.metrics.events_delivered += len(frames)
        return frames


def _up_to(page: History, cut: int) -> History:
    """The page's events at or below the cut; no more pages once one passes it."""
    if not page.events or page.events[-1].position <= cut:
        return page
    kept = [event for event in page.events if event.position <= cut]
    return History(kept, page.reset, more=False)
