"""What a worker tells its engine about itself, and what it hears of the other workers.

The ``Presence`` and ``Totals`` half of ``hub.backplane.engine_client``: this worker's
subscriber counts go to the engine when they change (looked at every ``COUNTS_INTERVAL``, and
on the next loop pass after a channel is followed or unfollowed, i.e. its first subscriber came
or its last left, at most once per ``COUNTS_SOON``); the engine pushes the others' sums back to
every worker, so publish receipts and ``/channels`` count the whole hub within a fraction of a
second. The counters (``Totals``) and
the engine's state go with a report every ``REPORT_INTERVAL``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from hub.backplane import BackplaneUnavailable, Counts
from hub.backplane.engine_link import EngineLink

__all__ = ["COUNTS_INTERVAL", "REPORT_INTERVAL", "Reports"]

#: Seconds between two reports (counts and counters out, the others' sums in).
REPORT_INTERVAL = 1.0
#: Seconds between two looks at this worker's counts, sent when they changed.
COUNTS_INTERVAL = 0.25
#: Seconds a follow or unfollow waits before the counts go: many subscribers coming at once
#: (a reconnect storm) cost one send per this interval, not one each.
COUNTS_SOON = 0.02


class Reports:
    def __init__(self) -> None:
        self.local_counts: Callable[[], Counts] | None = None
        self.local_totals: Callable[[], dict[str, Any]] | None = None
        self.remote = Counts()  # the other workers' counts, summed
        self.others_totals: dict[str, Any] = {}
        self.detail: dict[str, Any] = {}  # the engine's state, for /healthz
        self._sent = Counts()  # this worker's counts as last sent
        self._soon: asyncio.Handle | None = None
        self._last = 0.0  # the loop's time of the last send of the counts
        self._link: EngineLink | None = None

    def _counts(self) -> Counts:
        return self.local_counts() if self.local_counts is not None else Counts()

    async def report(self, link: EngineLink) -> None:
        """Counts and counters out; the others' sums and the engine's state in."""
        self._link = link
        counts = self._sent = self._counts()
        totals = self.local_totals() if self.local_totals is not None else {}
        channels, streams, others, detail = await link.call(
            "report", dict(counts.channels), counts.streams, totals
        )
        self.remote = Counts(channels, streams)
        self.others_totals = others
        self.detail = detail

    async def keep(self, link: EngineLink) -> None:
        """Until the link ends: counts when they change, a report every second."""
        loop = asyncio.get_running_loop()
        reported = loop.time()
        while link.up:
            await asyncio.sleep(min(COUNTS_INTERVAL, REPORT_INTERVAL))
            if loop.time() - reported < REPORT_INTERVAL:
                self.send_counts()
                continue
            reported = loop.time()
            with contextlib.suppress(BackplaneUnavailable):
                await self.report(link)

    def send_counts(self) -> None:
        """This worker's counts to the engine, if they changed since last sent."""
        self._soon = None
        link = self._link
        if self.local_counts is None or link is None or not link.up:
            return
        counts = self._counts()
        if counts != self._sent:
            self._sent = counts
            self._last = asyncio.get_running_loop().time()
            link.tell("counts", dict(counts.channels), counts.streams)

    def changed(self) -> None:
        """A channel was followed or unfollowed: send the counts on the next pass (the stream
        that made the change is registered, or gone, by then), or ``COUNTS_SOON`` after the
        last send when that was sooner (a leading edge, then at most one send per interval)."""
        if self._soon is not None or self.local_counts is None:
            return
        loop = asyncio.get_running_loop()
        wait = self._last + COUNTS_SOON - loop.time()
        if wait > 0:
            self._soon = loop.call_later(wait, self.send_counts)
        else:
            self._soon = loop.call_soon(self.send_counts)

    def heard(self, channels: dict[str, int], streams: int) -> None:
        """The engine's push of the others' sums."""
        self.remote = Counts(channels, streams)

    async def fetch_totals(self, link: EngineLink | None) -> dict[str, Any]:
        """The others' counters now (as of their last report); the last answer while the
        engine cannot be reached."""
        if link is not None:
            with contextlib.suppress(BackplaneUnavailable):
                self.others_totals = await link.call("totals")
        return self.others_totals

    def close(self) -> None:
        if self._soon is not None:
            self._soon.cancel()
            self._soon = None
