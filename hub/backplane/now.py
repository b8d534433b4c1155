"""The optional ``PublishNow`` interface: one event stored and delivered in one plain call.

A backplane that stores without awaiting (memory) can take the hottest publish, one untagged
event without an idempotency key, as one call instead of a coroutine and its steps: a single
publish's own work in the hub is a few dozen Python calls, each a noticeable share of it
(docs/performance.md, "Counted in instructions"). Redis and NATS store over a connection and
have nothing to gain: they are never asked.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["PublishNow"]


@runtime_checkable
class PublishNow(Protocol):
    """Optional (memory only): ``publish([Draft(channel, body)], None)`` in one call."""

    def publish_now(self, channel: str, body: bytes) -> str | None:
        """The event's id once stored and delivered; None when this case needs the general
        ``publish`` (then nothing was stored). Raises nothing ``publish`` would not."""
