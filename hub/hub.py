"""The hub core: channels, subscriptions, and the fan-out of ready-made frames.

It knows channels and subscriptions, not HTTP: the socket side is ``hub.outlet``, the
history/live merge is ``hub.subscription``, storage and ids are the backplane's. The hot path is
``deliver``: an event's frame was encoded once (by the backplane), and the same bytes object is
appended to the pending list of every live subscription of its channel; the outlet's ``Writer``
then writes each one's pending frames in one write per event-loop pass.

Channels are opened with their first subscription and closed after their last (``hub.channel``
says what a channel is: a feed, or ephemeral with a source such as a clock's ticker).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

from hub import sse
from hub.backplane import Backplane, Deletion, Presence, Published
from hub.census import Census
from hub.channel import Channel, SourceFactory
from hub.config import Config
from hub.events import Draft, Event
from hub.limits import ClientCounts
from hub.metrics import Metrics
from hub.outlet import Writer
from hub.refusals import Refusals
from hub.subscription import State, Subscription
from hub.tasks import Tasks

__all__ = ["AtCapacity", "Hub"]


class AtCapacity(Exception):
    """The hub holds ``max_subscribers`` streams or ``max_channels`` channels, or is stopping."""


class Hub:
    def __init__(
        self, config: Config, backplane: Backplane, metrics: Metrics, sources: SourceFactory
    ) -> None:
        self.config = config
        self.backplane = backplane
        self.metrics = metrics
        self.retry_frame = sse.retry(config.retry)
        self._sources = sources
        self._channels: dict[str, Channel] = {}
        #: per client address: open streams (counted by the stream handler), channels made
        self.clients = ClientCounts(config.max_client_streams, config.max_client_channels)
        #: log lines of clients turned away by a limit (hub.api.subscribe's _refuse)
        self.refusals = Refusals(config)
        self._subscriptions: dict[Subscription, None] = {}
        self._writer = Writer(metrics, config.max_pending_bytes, self.drop)
        self._max_held = config.max_pending_bytes
        self._presence = backplane if isinstance(backplane, Presence) else None
        #: what the hub can say about itself (counts, health)
        self.census = Census(self._channels, self._subscriptions, backplane)
        self.deletion = backplane if isinstance(backplane, Deletion) else None
        self._tasks = Tasks()
        self._closing = False
        # the newest position received live (any channel): where a partial replay is cut
        self.delivered = 0

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self._presence is not None:
            self._presence.share_counts(self.census.local_counts)
        await self.backplane.start(self)
        beat = self._writer.beat_forever(self.config.heartbeat, lambda: self._subscriptions)
        self._tasks.spawn(beat, "heartbeat")

    async def end_streams(self) -> None:
        """First step of a shutdown: refuse new streams, write what is pending, end every stream.

        Each stream ends with a clean end of the HTTP response, so browsers reconnect (to another
        replica) and resume with ``Last-Event-ID``.
        """
        self._closing = True
        self._writer.flush()
        for subscription in list(self._subscriptions):
            self.close(subscription)

    async def stop(self) -> None:
        await self.end_streams()
        await self._tasks.cancel_all()
        await self.backplane.close()

    # -- subscribing -------------------------------------------------------------------------

    def subscribe(
        self,
        names: Sequence[str],
        last_event_id: str | None,
        from_start: bool,
        client: str = "",
        replay: Sequence[str] = (),
    ) -> Subscription:
        """Register a stream on ``names`` (validated, distinct); raises ``AtCapacity``.

        Use it as ``async with hub.subscribe(...) as subscription``: entering follows the
        channels and reads the first history page (raising ``BackplaneUnavailable`` before
        anything was sent), so that whatever is published once a client sees the response
        headers reaches it; leaving closes it, whatever happened. In between,
        ``await subscription.open(outlet)`` writes the head and goes live, and
        ``await subscription.done`` waits for the end of the stream. ``client``: the client
        address, charged for the channels this stream brings into being.

        ``from_start`` replays every channel's history first, ``replay`` only those channels'
        (the others start live); a ``last_event_id`` resumes every channel after it instead.
        """
        if self._closing:
            raise AtCapacity("the hub is shutting down")
        if len(self._subscriptions) >= self.config.max_subscribers:
            raise AtCapacity("max_subscribers reached")
        new = sum(name not in self._channels for name in names)
        if new and len(self._channels) + new > self.config.max_channels:
            raise AtCapacity("max_channels reached")
        if new and not self.clients.may_create(client, new):
            raise AtCapacity("max_client_channels reached")
        channels = [self._channels.get(name) or self._open_channel(name, client) for name in names]
        names = tuple(names)
        done = asyncio.get_running_loop().create_future()
        asked = (last_event_id, names if from_start else tuple(replay))
        subscription = Subscription(self, names, done, asked)
        for channel in channels:
            channel.syncing[subscription] = None
        self._subscriptions[subscription] = None
        return subscription

    def went_live(self, subscription: Subscription) -> None:
        """Called by the subscription once its head is written: live frames from now on."""
        for name in subscription.channels:
            channel = self._channels[name]
            del channel.syncing[subscription]
            channel.live[subscription] = None

    def feeds(self, names: Iterable[str]) -> tuple[str, ...]:
        """The channels among ``names`` whose events come from the backplane (not ephemeral)."""
        found = (self._channels.get(name) for name in names)
        return tuple(channel.name for channel in found if channel and channel.source is None)

    def ephemeral_frames(self, names: Iterable[str], now: float) -> list[bytes]:
        """What a new subscriber of ephemeral channels gets at once (a clock: the time now)."""
        frames = []
        for name in names:
            source = self._channels[name].source
            if source is not None:
                frames.append(source.frame(now))
        self.metrics.events_delivered += len(frames)
        return frames

    def close(self, subscription: Subscription) -> None:
        """Forget a stream (idempotent); ends its response if the handler is still waiting."""
        if self._subscriptions.pop(subscription, False) is False:
            return
        subscription.state = State.CLOSED
        for name in subscription.channels:
            channel = self._channels.get(name)
            if channel is None:
                continue
            channel.live.pop(subscription, None)
            channel.syncing.pop(subscription, None)
            if not channel:
                self._close_channel(channel)
        subscription.outlet = None
        subscription.held = ()
        subscription.pending = ()
        if not subscription.done.done():
            subscription.done.set_result(None)

    def drop(self, subscription: Subscription) -> None:
        """Cut off a slow reader; it resumes with Last-Event-ID when it reads again."""
        if subscription.state is State.CLOSED:
            return
        self.metrics.subscribers_dropped += 1
        if subscription.outlet is not None:
            subscription.outlet.abort()
        self.close(subscription)

    def _open_channel(self, name: str, client: str) -> Channel:
        source = self._sources(name, self._emit)
        channel = self._channels[name] = Channel(name, source, client)
        self.clients.created(client)
        if source is not None:
            source.start()
        return channel

    def _close_channel(self, channel: Channel) -> None:
        del self._channels[channel.name]
        self.clients.released(channel.owner)
        if channel.source is None:
            self.backplane.unfollow(channel.name)
            return
        task = channel.source.stop()
        if task is not None:  # awaited on shutdown like every other task
            self._tasks.keep(task)

    # -- publishing and fan-out --------------------------------------------------------------

    async def publish(self, drafts: Sequence[Draft], idempotency_key: str | None) -> Published:
        """Store and fan out. Raises ``BackplaneUnavailable`` or ``BackplaneFull``; then
        nothing was acknowledged."""
        published = await self.backplane.publish(drafts, idempotency_key)
        if not published.replayed:
            self.metrics.events_published += len(drafts)
        return published

    def deliver(self, events: Sequence[Event]) -> None:
        """Live events from the backplane: queue each frame for every subscriber of its channel."""
        channels = self._channels
        writer = self._writer
        fan_out = writer.fan_out
        published_at = writer.published_at
        for event in events:
            channel = channels.get(event.channel)
            if channel is None:
                continue
            fan_out(channel.live, event.frame, event.position)
            if channel.syncing:
                self._hold(channel, event)
            if channel.live:
                published_at.append(event.published_at)
        if events:
            self.delivered = events[-1].position
        if writer.dirty:
            writer.schedule()

    def _hold(self, channel: Channel, event: Event) -> None:
        """Keep a live event for the subscriptions still reading their history, within bounds."""
        for subscription in list(channel.syncing):
            held = subscription.held
            if isinstance(held, list):
                held.append(event)
            else:
                subscription.held = [event]
            subscription.held_bytes += len(event.frame)
            if subscription.held_bytes > self._max_held:
                self.drop(subscription)

    def _emit(self, name: str, frame: bytes) -> None:
        """Fan out an ephemeral frame (a clock tick): no position, no history."""
        channel = self._channels.get(name)
        if channel is None:
            return
        self._writer.fan_out(channel.live, frame)
        self._writer.schedule()

    def lost(self, channel: str) -> None:
        """End the streams of a channel whose live order was broken; clients resume and get a
        ``reset`` if the history no longer reaches back far enough."""
        found = self._channels.get(channel)
        if found is not None:
            for subscription in [*found.live, *found.syncing]:
                self.close(subscription)

    def deleted(self, name: str) -> None:
        """The channel was deleted (here or on another process): ``event: close`` on every
        stream of it, after whatever was queued before. A stream of that channel alone ends; one
        of several carries on with the others; one still replaying ends (told at reconnect)."""
        channel = self._channels.get(name)
        if channel is None:
            return
        frame = sse.close_frame(name)
        live = list(channel.live)
        self._writer.fan_out(live, frame)
        self.metrics.events_delivered += len(live)
        self._writer.flush()  # written now, before the streams that end are closed
        for subscription in [*channel.syncing]:
            self.close(subscription)
        for subscription in live:
            self.detach(subscription, name)

    def detach(self, subscription: Subscription, name: str) -> None:
        """Take one channel off a stream; a stream left with none ends."""
        if name not in subscription.channels:
            return
        if len(subscription.channels) == 1:
            self.close(subscription)
            return
        subscription.channels = tuple(c for c in subscription.channels if c != name)
        channel = self._channels.get(name)
        if channel is not None:
            channel.live.pop(subscription, None)
            channel.syncing.pop(subscription, None)
            if not channel:
                self._close_channel(channel)

    @property
    def subscribers(self) -> int:
        """Open streams on this process."""
        return len(self._subscriptions)
