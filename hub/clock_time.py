"""Where a clock reads the time, and what a zone calls an instant: its UTC offset and abbreviation.

A clock ticker never calls ``time.time()`` itself: it asks a ``TimeSource``. The hub's is the
system clock (``SYSTEM_TIME``); a test that must cross a DST transition on a given date (no one
can wait for the last Sunday of March) starts a hub with a source of its own and moves it, while
everything else (the ticker, the hub, the sockets) stays real.

The labels of an instant in a zone (``"+01:00"``, ``"BST"``) change at the zone's transitions.
``zoneinfo`` keeps its transition table private, so ``transition_in`` finds the instant a label
changed by bisecting whole seconds between two instants it knows: a dozen look-ups for an hour,
and only when a change was seen, never on an ordinary tick.
"""

from __future__ import annotations

import asyncio
import time
import zoneinfo
from datetime import datetime, timedelta
from typing import Protocol

__all__ = [
    "SYSTEM_TIME",
    "Labels",
    "SystemTime",
    "TimeSource",
    "labels_of",
    "offset_text",
    "transition_in",
]


class TimeSource(Protocol):
    """The time as a clock tells it, in seconds since the epoch."""

    def now(self, wall: float) -> float:
        """This source's time when the system clock reads ``wall``.

        The hub reads the system clock once for a new subscriber and hands that reading to each
        of its clocks (``Source.frame(now)``); a source that is not the system clock says what
        time that reading means to it.
        """
        ...

    async def sleep_until(self, instant: float) -> None:
        """Return once this source's time has reached ``instant`` (at once if it has)."""
        ...


class SystemTime:
    """The system clock: what a hub's clocks tell."""

    def now(self, wall: float) -> float:
        return wall

    async def sleep_until(self, instant: float) -> None:
        await asyncio.sleep(max(0.0, instant - time.time()))


SYSTEM_TIME = SystemTime()

#: What a zone calls an instant: its UTC offset as ISO 8601 writes it, and its abbreviation.
Labels = tuple[str, str]


def offset_text(offset: timedelta | None) -> str:
    """``+05:45``, ``-03:30``, ``+00:00``: as ``datetime.isoformat`` ends (seconds only when a
    historical offset has them), so a tick's ``iso`` always ends with its ``offset``."""
    seconds = int(offset.total_seconds()) if offset is not None else 0
    sign = "-" if seconds < 0 else "+"
    hours, rest = divmod(abs(seconds), 3600)
    minutes, extra = divmod(rest, 60)
    return f"{sign}{hours:02d}:{minutes:02d}" + (f":{extra:02d}" if extra else "")


def labels_of(moment: datetime) -> Labels:
    """The offset and abbreviation of an aware ``moment`` (``tzname``: ``BST``, or ``+0545``
    where tzdata has no abbreviation of the zone's own)."""
    return offset_text(moment.utcoffset()), moment.tzname() or ""


def transition_in(zone: zoneinfo.ZoneInfo, before: int, after: int) -> int:
    """The first whole second in ``(before, after]`` that has ``after``'s labels, given that
    ``before`` has others: the transition's instant.

    Assumes one transition between them, which holds for the instants a ticker compares (at most
    an interval, 3600 s, apart, unless the process stalled); with several, it returns one at which
    the labels did change to ``after``'s.
    """
    wanted = labels_of(datetime.fromtimestamp(after, zone))
    while after - before > 1:
        middle = (before + after) // 2
        if labels_of(datetime.fromtimestamp(middle, zone)) == wanted:
            after = middle
        else:
            before = middle
    return after
