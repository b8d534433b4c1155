"""What a stream is given rather than the hub: the backplane's read side (``Reader``) and the
settings every stream of a hub shares (``Settings``). Apart from ``hub.stream`` so that the
stream's life stays one screenful of steps, and so that a dialect can name them without the
stream's machinery.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from hub.backplane import History
from hub.config import Config
from hub.metrics import Metrics
from hub.patterns import Patterns

__all__ = ["REPLAY_SLICE", "Reader", "Settings"]

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
    conflate: Patterns | None = None  # latest-wins channels (hub.conflation)

    @classmethod
    def of(cls, config: Config, metrics: Metrics) -> Settings:
        latest = Patterns(config.conflate) if config.conflate else None
        return cls(config.retry, config.max_pending_bytes, config.heartbeat, metrics, latest)

    def conflated(self, channels: Sequence[str]) -> frozenset[str]:
        """Those of ``channels`` that are latest-wins: their replay is their newest event."""
        patterns = self.conflate
        if patterns is None:
            return frozenset()
        return frozenset(name for name in channels if patterns.match(name))
