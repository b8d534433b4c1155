"""The optional ``Since`` interface: where in a backplane's positions a time falls, for
``?since=`` (replay by time).

Positions are not times, but every backplane can say cheaply where to start: on memory and Redis
a position is at least its event's store time in microseconds (``hub.events``), so the start is
that arithmetic, bounded by the newest position; on NATS (positions are ``base + sequence``) one
direct get with ``start_time`` finds the first message stored at or after the time. The stream
then reads the history from there as it would from a client's id, with its resets, and skips the
few events of the first pages stored before the time (a burst's positions can run ahead of the
clock). ``hub.stream`` is the reader.
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

__all__ = ["Since", "time_floor"]


@runtime_checkable
class Since(Protocol):
    """Optional (every shipped backplane has it): positions by store time."""

    async def position_at(self, when: float) -> int | None:
        """A position below every event stored at or after ``when`` (seconds since the epoch)
        and at most the newest position stored, to read the history after as a client's id;
        None when no event is stored at or after ``when`` (the stream starts live). Below the
        first position the store knows (its origin), the history's reset says so, which the
        stream reports as "expired": what came before is unknown. May raise
        ``BackplaneUnavailable``."""


def time_floor(when: float) -> int:
    """The position just below every event stored at or after ``when`` on a backplane whose
    positions are at least the store time in microseconds (memory, Redis)."""
    return math.ceil(when * 1_000_000) - 1
