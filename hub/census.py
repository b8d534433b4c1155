"""What the hub can say about itself: subscriber counts (here and cluster-wide), health.

Read by /channels, /healthz, /readyz, /metrics and publish receipts, and by a backplane's
``Presence`` (``local_counts``). It holds the hub's own dicts, not copies, so it is never stale.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from hub.backplane import Backplane, BackplaneState, Counts, Health, Presence

if TYPE_CHECKING:
    from hub.channel import Channel
    from hub.stream import Stream

__all__ = ["Census"]

#: The other processes' counts when there are none (asked on every publish receipt).
_ALONE = Counts()


class Census:
    def __init__(
        self,
        channels: dict[str, Channel],
        streams: dict[Stream, None],
        backplane: Backplane,
    ) -> None:
        self._channels = channels
        self._streams = streams
        self._kind = type(backplane).__name__
        self._presence = backplane if isinstance(backplane, Presence) else None
        self._health = backplane if isinstance(backplane, Health) else None
        #: a worker's: the counts of this hub's other workers (set at wiring, ``hub.app``);
        #: not ``remote_counts``, which on Redis or NATS are every process on the store
        self.siblings: Callable[[], Counts] | None = None

    def local_counts(self) -> Counts:
        counts = {name: len(channel) for name, channel in self._channels.items()}
        return Counts(counts, len(self._streams))

    def remote_counts(self) -> Counts:
        """Other hub processes' counts (a few seconds old); none without a shared backplane."""
        return self._presence.remote_counts() if self._presence is not None else _ALONE

    def has_local(self, name: str) -> bool:
        """Whether this process has subscribers of a channel."""
        return name in self._channels

    def remote_count(self, name: str) -> int:
        """Subscribers of a channel on the other hub processes (a few seconds old)."""
        return self.remote_counts().channels.get(name, 0)

    def subscriber_count(self, name: str) -> int:
        """Subscribers of a channel on every hub process."""
        channel = self._channels.get(name)
        local = 0 if channel is None else len(channel)
        if self._presence is None:  # one process: every publish's receipt asks
            return local
        return local + self._presence.remote_counts().channels.get(name, 0)

    def health(self) -> BackplaneState:
        if self._health is not None:
            return self._health.state()
        return BackplaneState(kind=self._kind)

    @property
    def cluster_subscribers(self) -> int:
        return len(self._streams) + self.remote_counts().streams

    def sibling_counts(self) -> Counts:
        """The other workers' counts of this hub (none for a hub of one process)."""
        return self.siblings() if self.siblings is not None else _ALONE

    @property
    def hub_subscribers(self) -> int:
        """Open streams on every worker of this hub."""
        return len(self._streams) + self.sibling_counts().streams

    @property
    def hub_channels(self) -> int:
        """Channels with subscribers on any worker of this hub."""
        others = self.sibling_counts().channels
        return len({*self._channels, *others}) if others else len(self._channels)

    @property
    def subscribers(self) -> int:
        return len(self._streams)

    @property
    def channel_names(self) -> Iterable[str]:
        return self._channels.keys()

    @property
    def channel_count(self) -> int:
        return len(self._channels)

    @property
    def sources(self) -> int:
        """Running ephemeral sources (clock tickers)."""
        return sum(1 for channel in self._channels.values() if channel.source is not None)
