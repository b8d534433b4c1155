"""The streams of this process on their channels: who is registered where, and how one leaves.

Split from ``hub.hub`` so that the hub keeps a stream's life (``Hub.stream``) and the listener's
side (``deliver``, deletion, closing), while the bookkeeping both of them change lives in one
place: registering a stream on its channels (with the capacity checks that refuse it before
anything was sent), taking a channel off a stream, forgetting a stream, cutting off a slow
reader. Every path that ends a stream goes through ``close``, so a stream is unregistered once,
whatever ended it, and a channel is closed after its last stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from hub.ask import Ask, AtCapacity
from hub.channel import Channels
from hub.config import Config
from hub.limits import ClientCounts
from hub.metrics import Metrics
from hub.stream import Stream
from hub.view import View

__all__ = ["Roster"]


class Roster:
    def __init__(
        self, config: Config, channels: Channels, clients: ClientCounts, metrics: Metrics
    ) -> None:
        self.streams: dict[Stream, None] = {}
        #: set at shutdown: no new stream is registered
        self.closing = False
        self._config = config
        self._channels = channels
        self._clients = clients
        self._metrics = metrics

    def register(self, ask: Ask, view: View) -> Stream:
        """A new stream on ``ask.channels``, syncing (its live events held); raises
        ``AtCapacity`` before anything is registered."""
        if self.closing:
            raise AtCapacity("the hub is shutting down")
        if len(self.streams) >= self._config.max_subscribers:
            raise AtCapacity("max_subscribers reached")
        by_name = self._channels.by_name
        names = tuple(ask.channels)
        new = sum(name not in by_name for name in names)
        if new and len(by_name) + new > self._config.max_channels:
            raise AtCapacity("max_channels reached")
        if new and not self._clients.may_create(ask.client, new):
            raise AtCapacity("max_client_channels reached")
        channels = [by_name.get(n) or self._channels.open(n, ask.client) for n in names]
        done = asyncio.get_running_loop().create_future()
        stream = Stream(names, view, done, (ask.last_event_id, tuple(ask.replay), ask.since))
        for channel in channels:
            channel.syncing[stream] = None
        self.streams[stream] = None
        return stream

    def feeds(self, names: Iterable[str]) -> tuple[str, ...]:
        """The channels among ``names`` whose events come from the backplane (not ephemeral)."""
        found = (self._channels.by_name.get(name) for name in names)
        return tuple(channel.name for channel in found if channel and channel.source is None)

    def close(self, stream: Stream) -> None:
        """Forget a stream (idempotent); ends its response if its owner is still waiting."""
        if self.streams.pop(stream, False) is False:
            return
        stream.end()
        for name in stream.channels:
            self._channels.leave(name, stream)

    def drop(self, stream: Stream) -> None:
        """Cut off a slow reader; it resumes with Last-Event-ID when it reads again."""
        self._metrics.subscribers_dropped += 1
        stream.cut_off()
        self.close(stream)

    def detach(self, stream: Stream, name: str) -> None:
        """Take one channel off a stream; a stream left with none ends."""
        if name not in stream.channels:
            return
        if not stream.without(name):
            self.close(stream)
            return
        self._channels.leave(name, stream)
