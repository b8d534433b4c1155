"""Redis backplane: the key layout, stream entries as events, and the link's health.

Shared by the modules of the Redis backplane (``redis``, ``redis_history``, ``redis_reader``,
``redis_presence``, ``redis_private``), so each names keys and tells an outage the same way
(``new_link``: a ``hub.backplane.link``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from redis.exceptions import RedisError, ResponseError

from hub.backplane.link import Link
from hub.events import Event, stored_event

__all__ = ["UNAVAILABLE", "Keys", "Link", "entry_event", "new_link", "position"]

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

    def notify(self) -> list[str]:
        """The notify stream (every publish's newest position and channels) and its trim
        marker (the oldest position it still holds after a trim), as the scripts take them."""
        return [f"{self.prefix}notify", f"{self.prefix}notify:trimmed"]

    def tombstone(self, channel: str) -> str:
        """Set while a deleted channel refuses publishes (``history_ttl``); a closed channel's
        holds ``c<position>`` (``redis_scripts.CLOSE``)."""
        return f"{self.prefix}gone:{channel}"

    def triples_of(self, channels: Sequence[str]) -> list[str]:
        return [k for c in channels for k in (self.stream(c), self.marker(c), self.tombstone(c))]

    def ticket(self, digest: str) -> str:
        return f"{self.prefix}ticket:{digest}"


def position(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0])


def entry_event(channel: str, at: int, fields: dict[bytes, bytes]) -> Event:
    return stored_event(at, channel, fields[b"b"], int(fields[b"t"]) / 1000)


def new_link() -> Link:
    """Witnesses: ``pool`` (publishes, history reads and the counts exchange, a write every few
    seconds, so it also notices a Redis that answers writes with errors such as OOM, and the end
    of it) and ``reader`` (the reader's own connection)."""
    return Link("redis", "Redis", ResponseError)
