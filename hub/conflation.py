"""Latest-wins channels (``conflate = ["prices/*"]``): a slow reader keeps the newest event only.

On an ordinary channel a subscriber whose unsent output passes ``max_pending_bytes`` is cut off
and resumes with ``Last-Event-ID`` (``hub.writer``): every event matters. On a conflated channel
only the newest one does (a price, a status), so a subscriber that falls behind is not cut off:
once its socket holds more than ``BEHIND`` unsent bytes (with what this loop pass queued for
it, so that a burst published at once counts too) it is *behind*, and from then on each
event of a conflated channel replaces the one kept for it (one per channel, so a stream of
several conflated channels gets the newest of each). ``_drain_forever`` looks at the behind
streams every ``POLL`` seconds; one whose socket has drained below half of ``BEHIND`` gets what
was kept, in position order, and is no longer behind. Nothing is kept per stream that is not
behind, and nothing runs while none is.

A stream that also carries ordinary channels is still cut off when its output passes
``max_pending_bytes`` (``spare`` says no): those events may not be dropped, and holding them
would be the unbounded buffer the cut-off exists to prevent. Its conflated channels' events are
kept as above meanwhile, and are written after the ordinary events that came while it was
behind: a resume from the last id it read may then repeat some of those (never lose one).

The hot path of ordinary channels is unchanged: ``Hub.deliver`` tests one flag per event (the
channel's ``conflated``, set when the channel opens) and the writer calls ``spare`` only where it
would cut a stream off. A replay keeps, of a conflated channel's history after the id, the
newest event only (``hub.latest_wins``). Clock channels (``hub.ticker``) are latest-wins by
nature: a tick has no id to resume from, and a new subscriber gets the time now, not the past.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

from hub.events import Event
from hub.patterns import Patterns
from hub.stream import Stream
from hub.tasks import Tasks
from hub.view import View
from hub.writer import Output, Writer, fan_out

__all__ = ["BEHIND", "POLL", "Conflator"]

#: Unsent bytes on a stream's socket past which it is behind on its conflated channels (the
#: transports' own high-water mark: a client that reads keeps below it).
BEHIND = 64 * 1024
#: Seconds between looks at the behind streams' sockets.
POLL = 0.05


class Conflator:
    """The behind streams and, for each, the newest frame of each conflated channel."""

    def __init__(self, patterns: Sequence[str], writer: Writer, tasks: Tasks) -> None:
        self._patterns = Patterns(patterns) if patterns else None
        self._writer = writer
        self._tasks = tasks
        self._behind: dict[Output, dict[str, tuple[int, bytes]]] = {}

    @property
    def active(self) -> bool:
        """Whether any channel is latest-wins."""
        return self._patterns is not None

    def matches(self, name: str) -> bool:
        return self._patterns is not None and self._patterns.match(name)

    def deliver(self, live: dict[View, dict[Stream, None]], event: Event) -> None:
        """``Hub.deliver`` for an event of a conflated channel: once per view, as there."""
        for view, streams in live.items():
            if view.filter is not None and not view.filter.passes(event):
                continue
            frame = event.frame if view.native else view.format.event(event)
            self.offer(streams, frame, event.position, event.channel)

    def offer(self, streams: Iterable[Output], frame: bytes, position: int, channel: str) -> None:
        """``fan_out`` for a conflated channel: queued as usual, or kept for a behind stream."""
        dirty = self._writer.dirty
        behind = self._behind
        for output in streams:
            if position <= output.floor:
                continue
            kept = behind.get(output)
            if kept is None:
                sink = output.sink
                transport = sink.transport if sink is not None else None
                pending = output.pending  # queued this loop pass: about as long as this one
                queued = len(pending) if isinstance(pending, list) else 1 if pending else 0
                unsent = queued * len(frame)
                if transport is None or transport.get_write_buffer_size() + unsent <= BEHIND:
                    fan_out((output,), frame, dirty, position)
                    continue
                kept = self._fall_behind(output)
            kept[channel] = (position, frame)

    def spare(self, output: Output) -> bool:
        """Whether the writer should spare a stream past ``max_pending_bytes`` (it carries
        conflated channels only): it is then behind instead of cut off."""
        if not isinstance(output, Stream) or not all(map(self.matches, output.channels)):
            return False
        self._fall_behind(output)
        return True

    def _fall_behind(self, output: Output) -> dict[str, tuple[int, bytes]]:
        kept = self._behind.get(output)
        if kept is None:
            kept = self._behind[output] = {}
            if len(self._behind) == 1:
                self._tasks.spawn(self._drain_forever(), "conflation")
        return kept

    async def _drain_forever(self) -> None:
        """Until no stream is behind: write what was kept for each that has drained."""
        behind = self._behind
        while behind:
            await asyncio.sleep(POLL)
            caught_up = False
            for output, kept in list(behind.items()):
                sink = output.sink
                transport = sink.transport if sink is not None else None
                if transport is None or transport.is_closing():
                    del behind[output]  # ended meanwhile
                    continue
                if transport.get_write_buffer_size() > BEHIND // 2:
                    continue
                del behind[output]
                for position, frame in sorted(kept.values()):
                    fan_out((output,), frame, self._writer.dirty, position)
                caught_up = True
            if caught_up:
                self._writer.schedule()
