"""The channels a backplane's reader follows, and those waiting for it to join them.

Shared by the Redis and NATS readers, which keep order across channels the same way: a reader
reads all its followed channels at once (one XREAD, one filtered consumer), so a new channel
can only join *between* two reads, and only the reader itself may set its cursor. ``follow``
therefore asks (``ask``), wakes the reader, and waits for the frontier the reader's join
resolves (``joined``); the reader takes the channels waiting at the start of a join
(``joining``), and those asked meanwhile wait for its next round, which the wake brings at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

__all__ = ["Following"]


class Following:
    """``cursors``: followed channel -> the newest position (or sequence) delivered."""

    def __init__(self) -> None:
        self.cursors: dict[str, int] = {}
        self._joining: dict[str, asyncio.Future[int]] = {}
        #: Set by a follow: a reader waiting for entries returns to join the new channels.
        self.wake = asyncio.Event()

    def ask(self, channels: Sequence[str]) -> tuple[list[asyncio.Future[int]], bool]:
        """The joins to wait for (none: all followed already), and whether any is new, so the
        reader must be woken (another follow woke it for the others)."""
        loop = asyncio.get_running_loop()
        waits = []
        asked = False
        for channel in channels:
            if channel in self.cursors:
                continue
            joining = self._joining.get(channel)
            if joining is None:
                joining = self._joining[channel] = loop.create_future()
                asked = True
            waits.append(joining)
        return waits, asked

    @staticmethod
    async def frontier(waits: Sequence[asyncio.Future[int]]) -> int:
        """The highest frontier of the joins waited for; shielded, so one subscriber leaving
        cannot cancel a join others wait for too."""
        return max([await asyncio.shield(joining) for joining in waits])

    @property
    def asked(self) -> bool:
        """Whether channels wait to be joined (a cheap test for every read round)."""
        return bool(self._joining)

    def joining(self) -> list[str]:
        """The channels waiting to be joined now (the reader's next join takes these)."""
        return list(self._joining)

    def joined(self, channel: str, cursor: int, frontier: int) -> None:
        """The reader joined ``channel`` at ``cursor``; its followers get ``frontier``. A channel
        unfollowed meanwhile is left out: nobody waits for it."""
        joining = self._joining.pop(channel, None)
        if joining is None:
            return
        self.cursors[channel] = cursor
        if not joining.done():
            joining.set_result(frontier)

    def unfollow(self, channel: str) -> None:
        self.cursors.pop(channel, None)
        joining = self._joining.pop(channel, None)
        if joining is not None and not joining.done():
            joining.cancel()

    def fail(self, problem: BaseException) -> None:
        """Every waiting follow raises ``problem`` (the subscribers get a 503)."""
        for joining in self._joining.values():
            if not joining.done():
                joining.set_exception(problem)
        self._joining.clear()

    def cancel(self) -> None:
        """Closing: nobody waits any more."""
        for joining in self._joining.values():
            joining.cancel()
