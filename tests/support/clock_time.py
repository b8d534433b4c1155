"""A time source a test sets, for hubs whose clocks must cross a DST transition on a given date.

``make_hub(clock_time=SetTime(instant))`` starts a real hub whose clocks read this source
instead of the system clock: it stands still until the test moves it, so each tick comes when
the test says and a test reads exactly the frames of the instants it stepped through. Nothing
else in the hub reads it (heartbeats, history, tickets keep the system clock).
"""

from __future__ import annotations

import asyncio
from datetime import datetime

__all__ = ["SetTime", "utc"]


def utc(text: str) -> float:
    """``"2027-03-28T01:00:00Z"`` as seconds since the epoch."""
    return datetime.fromisoformat(text).timestamp()


class SetTime:
    """A clock that reads ``instant`` until ``set`` or ``advance`` moves it (forward only)."""

    def __init__(self, instant: float) -> None:
        self._now = instant
        self._moved = asyncio.Event()

    @property
    def time(self) -> float:
        return self._now

    def now(self, wall: float) -> float:
        return self._now

    async def sleep_until(self, instant: float) -> None:
        while self._now < instant:
            moved = self._moved  # the event of this moment: ``set`` replaces it after firing
            await moved.wait()

    def set(self, instant: float) -> None:
        assert instant >= self._now, "a clock's time goes forward"
        self._now = instant
        self._moved.set()
        self._moved = asyncio.Event()

    def advance(self, seconds: float) -> None:
        self.set(self._now + seconds)
