"""The optional ``Totals`` interface: one process's counters summed with its siblings'.

A hub of several workers (``workers``) serves one port from several processes, and a scrape of
``/metrics`` lands on any one of them: each must show the whole hub's counters, not its own
share. A backplane that links the workers (the engine: ``hub.backplane.engine_client``) carries
each worker's snapshot (``hub.metrics.Metrics.snapshot``) to the others, a second old at most;
``/metrics`` adds the others' sum to its own fresh counters. The counters of a worker that ended
stay in the sum, so the hub's counters never go down when a worker is replaced.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

__all__ = ["Totals"]


@runtime_checkable
class Totals(Protocol):
    """Optional: the other workers' counters, for one ``/metrics`` of the whole hub."""

    def share_totals(self, local: Callable[[], dict[str, Any]]) -> None:
        """Send ``local()`` (this process's ``Metrics.snapshot``) to the others, every second."""

    async def others_totals(self) -> dict[str, Any]:
        """The other workers' snapshots (and the ended ones'), summed; a second old at most."""
