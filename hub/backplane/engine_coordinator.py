"""A worker's link to its supervisor when the backplane is Redis or NATS: the coordination part
of the engine (``hub.backplane.engine_limits.COORDINATION``).

The workers of a hub on Redis or NATS share events through the store, as separate hub processes
do, but the hub is still one hub: its limits hold hub-wide (``hub.shared_limits`` uses this
link) and ``/metrics`` and ``/healthz`` show all of its workers, not only the one a scrape
landed on, nor every process on the same Redis (those are ``hub_cluster_subscribers``). So the
supervisor serves the engine's reports and limits without its store, and each worker keeps one
link to it, with the same link (``engine_link``), wire and reports (``engine_reports``) as a
worker of the memory engine: its counts when they change and its counters every second out, the
other workers' sums in.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from hub import worker
from hub.backplane import BackplaneUnavailable, Counts
from hub.backplane.engine_link import EngineLink
from hub.backplane.engine_reports import Reports
from hub.backplane.engine_wire import socket_path

__all__ = ["Coordinator"]

#: Seconds between two attempts to reach the supervisor while the link is down.
RECONNECT_INTERVAL = 0.5


class Coordinator:
    """``Totals`` and the other workers' counts (``siblings``); ``coordinator_link`` for the
    hub-wide limits. Started before the hub listens, closed after it stopped."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._link: EngineLink | None = None
        self._reports = Reports()
        self._task: asyncio.Task[None] | None = None

    @property
    def coordinator_link(self) -> EngineLink | None:
        return self._link

    @property
    def up(self) -> bool:
        return self._link is not None and self._link.up

    async def start(self) -> None:
        with contextlib.suppress(OSError, BackplaneUnavailable):
            await self._connect()
        self._task = asyncio.create_task(self._keep_up(), name="coordinator-link")

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        _, link = await loop.create_unix_connection(
            lambda: EngineLink(self._pushed, lambda: None), socket_path(self._path)
        )
        self._link = link
        await link.call("hello", worker.number())
        await self._reports.report(link)

    async def _keep_up(self) -> None:
        """Reports while the link is up; reconnect while it is down (the supervisor is going
        away: the kernel ends this worker soon, ``hub.worker.die_with_supervisor``)."""
        while True:
            link = self._link
            if link is not None and link.up:
                await self._reports.keep(link)
            await asyncio.sleep(RECONNECT_INTERVAL)
            with contextlib.suppress(OSError, BackplaneUnavailable):
                await self._connect()

    def _pushed(self, message: list[Any]) -> None:
        if message[1] == "n":  # the other workers' counts changed
            self._reports.heard(message[2], message[3])

    async def close(self) -> None:
        self._reports.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._link is not None:
            self._link.close()
            self._link = None

    def share_counts(self, local: Callable[[], Counts]) -> None:
        self._reports.local_counts = local

    def siblings(self) -> Counts:
        """The other workers' counts, summed (a quarter of a second old at most)."""
        return self._reports.remote

    def share_totals(self, local: Callable[[], dict[str, Any]]) -> None:
        self._reports.local_totals = local

    async def others_totals(self) -> dict[str, Any]:
        return await self._reports.fetch_totals(self._link)

    def state(self) -> dict[str, Any]:
        """For ``/healthz``: whether the link is up, and how many workers the supervisor has."""
        return {"connected": self.up, "workers": self._reports.detail.get("workers", 0)}
