"""A channel: the streams of one name, and where its events come from.

A channel is either a *feed* (its events come from the backplane, with positions and history)
or *ephemeral*: it has a source of its own on this process, such as a clock's ticker, which
starts with the channel's first subscriber and stops after its last, and whose frames carry no
id and are kept nowhere. The hub treats both alike but for that one flag; it never asks whether
a channel is a clock.

Its live streams are grouped by ``View`` (``hub.view``): the fan-out encodes an event once per
group and hands the same bytes to every stream of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from hub.limits import ClientCounts
from hub.tasks import Tasks
from hub.writer import ANY_FLOOR, Output, fan_out

if TYPE_CHECKING:
    from hub.stream import Stream
    from hub.view import View

__all__ = ["Channel", "Channels", "Hooks", "Source", "SourceFactory"]


class Source(Protocol):
    """What makes an ephemeral channel's frames (a clock's ticker)."""

    def start(self) -> None: ...

    def stop(self) -> asyncio.Task[None] | None: ...

    def frame(self, now: float) -> bytes:
        """The frame a new subscriber gets at once (a clock: the current time)."""


class Hooks(Protocol):
    """What else follows channels coming and going on this process, and streams joining and
    leaving them (latest-wins flags, presence, webhooks: ``hub.hooks``). None is set unless one
    of those is configured, so a channel costs nothing more without them."""

    def opened(self, channel: Channel) -> None:
        """Its first stream here (sets its flags: ``conflated``, ``watched``)."""

    def closed(self, name: str) -> None:
        """Its last stream here left."""

    def joined(self, name: str, stream: Stream, who: str | None) -> None:
        """A stream joined a ``watched`` channel (``who``: its grant's sub)."""

    def left(self, name: str, stream: Stream) -> None:
        """A stream left a ``watched`` channel."""


#: Given a channel name and the function that fans a frame out to it: its source, or None
#: for a feed channel.
SourceFactory = Callable[[str, Callable[[str, bytes], None]], Source | None]


class Channel:
    __slots__ = ("conflated", "live", "name", "owner", "source", "syncing", "watched")

    def __init__(self, name: str, source: Source | None, owner: str) -> None:
        self.name = name
        #: latest-wins (``hub.conflation``): its events go through ``Conflator.offer``
        self.conflated = False
        #: its streams' joins and leaves go to ``Hooks`` (a presence channel tracks it)
        self.watched = False
        self.owner = owner  # the client address that brought it into being (max_client_channels)
        #: live streams by view: one group (and one encoding of each event) per view present
        self.live: dict[View, dict[Stream, None]] = {}
        self.syncing: dict[Stream, None] = {}
        self.source = source

    def __len__(self) -> int:
        """Its streams, live and syncing."""
        return sum(map(len, self.live.values())) + len(self.syncing)

    def go_live(self, stream: Stream) -> None:
        del self.syncing[stream]
        group = self.live.get(stream.view)
        if group is None:
            group = self.live[stream.view] = {}
        group[stream] = None

    def discard(self, stream: Stream) -> None:
        self.syncing.pop(stream, None)
        group = self.live.get(stream.view)
        if group is not None and group.pop(stream, False) is None and not group:
            del self.live[stream.view]

    def live_streams(self) -> list[Stream]:
        return [stream for group in self.live.values() for stream in group]

    def fan_out_control(self, frame: bytes, ended: str | None, dirty: list[Output]) -> int:
        """A frame with no position to every live stream, in each view's format: a tick
        (``frame``) or, with ``ended`` (deleted or closed), the close frame; how many."""
        count = 0
        for view, streams in self.live.items():
            if ended is None and not view.passes_frame(frame):
                continue  # a tick this view's filter leaves out (a close always passes)
            fmt = view.format
            data = fmt.close(ended) if ended is not None else fmt.tick(frame)
            fan_out(streams, data, dirty, ANY_FLOOR)
            count += len(streams)
        return count


class Channels:
    """The channels of this process: each opened with its first stream, closed after its last
    (a feed is unfollowed, an ephemeral channel's source stopped)."""

    def __init__(
        self,
        sources: SourceFactory,
        emit: Callable[[str, bytes], None],
        clients: ClientCounts,
        unfollow: Callable[[str], None],
        tasks: Tasks,
    ) -> None:
        self.by_name: dict[str, Channel] = {}
        self._sources = sources
        self._emit = emit
        self._clients = clients
        self._unfollow = unfollow
        self._tasks = tasks
        self.hooks: Hooks | None = None

    def open(self, name: str, client: str) -> Channel:
        source = self._sources(name, self._emit)
        channel = self.by_name[name] = Channel(name, source, client)
        if self.hooks is not None:
            self.hooks.opened(channel)
        self._clients.created(client)
        if source is not None:
            source.start()
        return channel

    def leave(self, name: str, stream: Stream) -> None:
        """``stream`` no longer carries the channel ``name``; closes it if it was the last."""
        channel = self.by_name.get(name)
        if channel is None:
            return
        channel.discard(stream)
        hooks = self.hooks
        if hooks is not None and channel.watched:
            hooks.left(name, stream)
        if channel:
            return
        del self.by_name[name]
        if hooks is not None:
            hooks.closed(name)
        self._clients.released(channel.owner)
        if channel.source is None:
            self._unfollow(name)
            return
        task = channel.source.stop()
        if task is not None:  # awaited on shutdown like every other task
            self._tasks.keep(task)
