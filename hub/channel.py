"""A channel: the subscriptions of one name, and where its events come from.

A channel is either a *feed* (its events come from the backplane, with positions and history)
or *ephemeral*: it has a source of its own on this process, such as a clock's ticker, which
starts with the channel's first subscriber and stops after its last, and whose frames carry no
id and are kept nowhere. The hub treats both alike but for that one flag; it never asks whether
a channel is a clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from hub.subscription import Subscription

__all__ = ["Channel", "Source", "SourceFactory"]


class Source(Protocol):
    """What makes an ephemeral channel's frames (a clock's ticker)."""

    def start(self) -> None: ...

    def stop(self) -> asyncio.Task[None] | None: ...

    def frame(self, now: float) -> bytes:
        """The frame a new subscriber gets at once (a clock: the current time)."""


#: Given a channel name and the function that fans a frame out to it: its source, or None
#: for a feed channel.
SourceFactory = Callable[[str, Callable[[str, bytes], None]], Source | None]


class Channel:
    __slots__ = ("live", "name", "owner", "source", "syncing")

    def __init__(self, name: str, source: Source | None, owner: str) -> None:
        self.name = name
        self.owner = owner  # the client address that brought it into being (max_client_channels)
        self.live: dict[Subscription, None] = {}
        self.syncing: dict[Subscription, None] = {}
        self.source = source

    def __len__(self) -> int:
        """Its subscriptions, live and syncing."""
        return len(self.live) + len(self.syncing)
