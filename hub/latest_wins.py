"""A replay of latest-wins channels (``conflate``, ``hub.conflation``): the newest event only.

Apart from ``hub.stream`` (which calls it for each history page and for the held events) so
that the replay's merge reads as before and this rule reads on its own. A stream of conflated
channels only carries each one's newest event from page to page and writes them with the last
page, so a resume gets the newest event after its id however many pages the history spans; its
floor moves past each page read, so the next page starts after it. A stream that mixes them
with ordinary channels, whose events cannot wait, gets the newest of each page instead.
"""

from __future__ import annotations

from collections.abc import Sequence

from hub.events import Event

__all__ = ["LatestWins", "newest_only"]


def newest_only(events: Sequence[Event], conflated: frozenset[str]) -> Sequence[Event]:
    """Of ``events`` (in position order), every one of the channels not ``conflated`` and the
    newest of each conflated one, in position order."""
    newest = {event.channel: event.position for event in events if event.channel in conflated}
    if len(newest) == len(events):
        return events
    return [e for e in events if e.channel not in conflated or newest[e.channel] == e.position]


class LatestWins:
    """One replay's conflated channels and what it carries to its last page."""

    __slots__ = ("_carried", "_mixed", "_start", "conflated")

    def __init__(self, conflated: frozenset[str], channels: Sequence[str], floor: int) -> None:
        self.conflated = conflated
        self._mixed = len(conflated) < len(channels)
        self._start = floor  # where the replay starts: every carried event is above it
        self._carried: dict[str, Event] = {}

    def page(self, events: Sequence[Event], more: bool, floor: int) -> tuple[Sequence[Event], int]:
        """What to write of a page, and the stream's floor to write it from."""
        events = newest_only(events, self.conflated)
        if self._mixed:
            return events, floor
        self._carried.update((event.channel, event) for event in events)
        if more:
            return (), events[-1].position if events else floor
        return sorted(self._carried.values()), self._start
