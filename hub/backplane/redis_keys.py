"""Redis backplane: the key layout, stream entries as events, and the link's health.

Shared by the modules of the Redis backplane (``redis``, ``redis_reader``, ``redis_presence``),
so each names keys and tells an outage the same way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from redis.exceptions import RedisError, ResponseError

from hub import sse
from hub.backplane import BackplaneState, BackplaneUnavailable
from hub.events import Event, event_id

__all__ = ["UNAVAILABLE", "Keys", "Link", "describe", "entry_event", "pairs", "position"]

log = logging.getLogger("hub.backplane")

#: What a Redis that is away *or answers with an error* raises. ``RedisError`` covers the
#: connection errors and timeouts and also every error reply (``ResponseError``: OOM, BUSY,
#: READONLY, MISCONF, NOSCRIPT, ...); none of them may escape to the hub, where an unexpected
#: exception would kill a request handler, or the reader task for good.
UNAVAILABLE: tuple[type[BaseException], ...] = (RedisError, OSError)


class Keys:
    """The key layout under one ``redis_prefix`` (described in ``hub.backplane.redis``)."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def stream(self, channel: str) -> str:
        return f"{self.prefix}s:{channel}"

    def marker(self, channel: str) -> str:
        """The newest position trimmed from the channel's stream (0 or missing: none)."""
        return f"{self.prefix}t:{channel}"

    def pairs_of(self, channels: Sequence[str]) -> list[str]:
        return [key for c in channels for key in (self.stream(c), self.marker(c))]

    def tombstone(self, channel: str) -> str:
        """Set while a deleted channel refuses publishes (``history_ttl``)."""
        return f"{self.prefix}gone:{channel}"

    def triples_of(self, channels: Sequence[str]) -> list[str]:
        return [k for c in channels for k in (self.stream(c), self.marker(c), self.tombstone(c))]

    def ticket(self, digest: str) -> str:
        return f"{self.prefix}ticket:{digest}"


class Link:
    """Whether Redis answers, from two independent witnesses.

    ``pool``: publishes, history reads and the counts exchange (a write every few seconds, so
    it also notices a Redis that answers writes with errors, e.g. OOM, and notices the end of
    it). ``reader``: the reader's own connection. A witness is cleared only by its own success:
    a read that works does not prove that writes do, so a successful history read alone never
    declares the link healthy while writes answer errors.
    """

    def __init__(self) -> None:
        self._failing: dict[str, str] = {}  # witness -> its last error
        self._lost_at: float | None = None

    @property
    def connected(self) -> bool:
        return not self._failing

    def lost(self, witness: str, problem: BaseException) -> None:
        was = self.connected
        self._failing[witness] = describe(problem)
        if was:
            self._lost_at = time.time()
            log.warning("backplane lost: Redis does not answer normally (%s)",
                        self._failing[witness], extra={"event": "backplane-lost"})  # fmt: skip

    def regained(self, witness: str) -> None:
        if self._failing.pop(witness, None) is not None and self.connected:
            down = time.time() - (self._lost_at or time.time())
            log.info("backplane regained: Redis answers again after %.1fs", down,
                     extra={"event": "backplane-regained"})  # fmt: skip
            self._lost_at = None

    def unavailable(self, witness: str, problem: BaseException) -> BackplaneUnavailable:
        """Note the failure and build the exception the hub turns into a 503."""
        self.lost(witness, problem)
        if isinstance(problem, ResponseError):
            return BackplaneUnavailable(f"Redis answered with an error ({describe(problem)})")
        return BackplaneUnavailable(f"Redis did not answer ({describe(problem)})")

    def state(self, detail: dict[str, Any]) -> BackplaneState:
        if self._failing:
            detail["error"] = "; ".join(sorted(set(self._failing.values())))
            detail["down_since"] = self._lost_at
        return BackplaneState(kind="redis", connected=self.connected, detail=detail)


def position(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0])


def pairs(flat: list[bytes]) -> dict[bytes, bytes]:
    """A Lua reply's flat [field, value, ...] list as the dict redis-py gives elsewhere."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def entry_event(channel: str, at: int, fields: dict[bytes, bytes]) -> Event:
    frame = sse.with_id(event_id(at, channel), fields[b"b"])
    return Event(at, channel, frame, int(fields[b"t"]) / 1000)


def describe(problem: BaseException) -> str:
    return f"{type(problem).__name__}: {problem}" if str(problem) else type(problem).__name__
