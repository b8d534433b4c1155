"""The hub core: channels, streams, and the fan-out of ready-made frames.

ARCHITECTURE, the core's rooms, lowest first (each imports only those before it):
``hub.backplane`` (positions, history, live delivery; read through ``hub.stream.Reader``,
heard through ``deliver``/``lost``/``deleted``/``closed`` here) < ``hub.view`` (a dialect's
``Format``; the ``View`` streams are grouped by) < ``hub.writer`` (a stream's output: fan-out
loop, one flush per loop pass, heartbeats, slow readers) < ``hub.stream`` (one stream's state
and history/live merge) < ``hub.channel``, ``hub.census``, ``hub.deadlines`` < ``hub.roster``
(which streams are registered on which channels) < ``hub.hub`` (this module: drives each
stream's life in one call, fans out once per view, deletion and closing, lost order).
Wire dialects (``hub.api.subscribe`` is the native one) and the socket side (``hub.outlet``, a
``Sink``) sit on top; nothing in the core imports them.

HOW A DIALECT PLUGS IN (Durable Streams, the AI SDK's resumable stream, ...): one package of its
own, e.g. ``hub/dialects/<name>/``, that touches nothing else:

1. a ``Format`` (``hub.view``) for its bytes, and one ``View`` of it made at wiring;
2. a route that checks the request, builds an ``Ask`` (``hub.ask``) and makes ONE call,
   ``await hub.stream(ask, view, sink)``; the ``Sink`` (``hub.writer``; an ``hub.outlet.Outlet``
   with the dialect's headers will do) sends the response headers when the core calls its
   ``open``, once the history is settled, so whatever is published after a client sees them
   reaches it;
3. its own answers for what is raised before ``open``: ``AtCapacity``, ``BackplaneUnavailable``
   (native: ``200`` + ``retry:``), ``AllDeleted`` (native: ``204``); its ``Format.close`` is
   the last frame of a channel deleted or closed (native: ``event: close``), after which the
   core takes the channel off the stream (a stream left with none ends);
4. publishing through ``hub.publish`` (drafts it encodes itself, ``hub.events.Draft``).

The hot path is ``deliver``: each event's frame was encoded once (by the backplane); for each
view on its channel one encoding (the native view: ``Event.frame`` itself, no call) is queued on
every live stream of the view, and the writer writes each queue in one write per loop pass.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from hub.ask import AllDeleted, Ask, AtCapacity
from hub.backplane import Backplane, Closing, Deletion, History, Presence, Published
from hub.backplane.now import PublishNow
from hub.backplane.since import Since
from hub.census import Census
from hub.channel import Channel, Channels, SourceFactory
from hub.config import Config
from hub.deadlines import Deadlines
from hub.events import Draft, Event
from hub.hooks import make_hooks
from hub.limits import ClientCounts
from hub.metrics import Metrics
from hub.roster import Roster
from hub.stream import Settings, Stream
from hub.tasks import Tasks
from hub.view import View
from hub.writer import ANY_FLOOR, Sink, Writer, fan_out

__all__ = ["AllDeleted", "Ask", "AtCapacity", "Hub"]  # the first three from hub.ask


class Hub:
    def __init__(
        self, config: Config, backplane: Backplane, metrics: Metrics, sources: SourceFactory
    ) -> None:
        self.config = config
        self._backplane = backplane
        self._metrics = metrics
        self._settings = Settings.of(config, metrics)
        #: per client address: open streams (counted by the stream handler), channels made
        self.clients = ClientCounts(config.max_client_streams, config.max_client_channels)
        self._tasks = Tasks()
        registry = Channels(sources, self._emit, self.clients, backplane.unfollow, self._tasks)
        self._channels = registry.by_name
        self._roster = roster = Roster(config, registry, self.clients, metrics)
        self._streams = roster.streams
        self._writer = Writer(metrics, config.max_pending_bytes)
        self._deadlines = Deadlines()
        self._presence = backplane if isinstance(backplane, Presence) else None
        self._deletion = backplane if isinstance(backplane, Deletion) else None
        self._closer = backplane if isinstance(backplane, Closing) else None
        self._times = backplane if isinstance(backplane, Since) else None
        self._now = backplane if isinstance(backplane, PublishNow) else None
        self.publishes_now = self._now is not None  # (hub.api.publish_single's fast path)
        #: what the hub can say about itself (counts, health): given to the routes at wiring
        self.census = Census(self._channels, self._streams, backplane)
        hooks = make_hooks(config, self._writer, self._tasks, self.publish, self.census, metrics)
        self._hooks = registry.hooks = hooks  # latest-wins, presence, webhooks; or None
        # the newest position received live (any channel): where a partial replay is cut
        self._delivered = 0

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self._presence is not None:
            self._presence.share_counts(self.census.local_counts)
        await self._backplane.start(self)
        if self._hooks is not None:
            self._hooks.start(self._tasks)
        beat = self._writer.beat_forever(self.config.heartbeat, self._streams.keys, _beat_of)
        self._tasks.spawn(beat, "heartbeat")

    async def end_streams(self) -> None:
        """First step of a shutdown: refuse new streams, write what is pending, end every stream
        with a clean end of its response, so browsers reconnect (to another replica) and resume."""
        self._roster.closing = True
        self._writer.flush()
        for stream in list(self._streams):
            self._roster.close(stream)

    async def stop(self) -> None:
        await self.end_streams()
        self._deadlines.close()
        await self._tasks.cancel_all()
        await self._backplane.close()

    # -- a stream's life, in one call --------------------------------------------------------

    async def stream(self, ask: Ask, view: View, sink: Sink) -> None:
        """Serve one stream from ``ask`` in ``view``'s format to ``sink``; returns when it ends.

        Before ``sink.open()`` (which sends the response headers) the
        channels are followed and the first history page read, so whatever is published once
        a client sees the headers reaches it; the outcomes a dialect answers in its own way are
        raised then: ``AtCapacity``, ``BackplaneUnavailable``, ``AllDeleted``. After it: the
        head, the replay, live until the end (a client that leaves ends it quietly).
        """
        stream = self._roster.register(ask, view)
        deadline = ask.deadline
        del ask  # this frame lives as long as the stream: it keeps nothing it no longer needs
        try:
            await stream.begin(
                self._backplane, self._roster.feeds(stream.channels), self._delivered, self._times
            )
            # (locals here live as long as the stream: shared empty tuples, no lists kept)
            gone = (self._deletion.deleted(stream.channels) if self._deletion else None) or ()
            if gone and len(gone) == len(stream.channels):
                raise AllDeleted(", ".join(gone))
            for name in gone:  # valid once followed; the other channels carry on
                self._roster.detach(stream, name)
            await sink.open()
            if deadline is not None:
                self._deadlines.add(deadline, stream)
            if not await self._catch_up(stream, sink, gone):
                return
            # No await since the last held event was written: a channel closed by now (its
            # ``closed`` call came after every event before it, all written) ends here; one
            # closed later is told live (``closed``).
            ended = self._closer.closed(stream.channels) if self._closer else ()
            for name in stream.channels:
                if name not in ended:
                    self._channels[name].go_live(stream)
            if ended and not self._end_channels(stream, ended):
                return
            await stream.done
        except ConnectionResetError:
            pass  # the client left
        finally:
            self._roster.close(stream)
            if deadline is not None:
                self._deadlines.discard()

    async def _catch_up(self, stream: Stream, sink: Sink, gone: Sequence[str]) -> bool:
        """The head, the history, the held events: True once nothing is left to write (in a
        frame of its own, so that no page is kept by the one that lives as long as the stream)."""
        parts = await stream.replay(self._backplane, sink, gone, self._settings)
        if parts is None or stream.is_closed():
            return False
        parts += self._ephemeral_frames(stream, time.time())
        return await stream.catch_up(parts, self._settings) and not stream.is_closed()

    def _end_channels(self, stream: Stream, names: Sequence[str]) -> bool:
        """Each channel's close frame, written now, then the channels taken off the stream;
        False when none is left (the stream ended)."""
        fmt = stream.view.format
        fan_out((stream,), b"".join(map(fmt.close, names)), self._writer.dirty, ANY_FLOOR)
        self._writer.flush()
        for name in names:
            self._roster.detach(stream, name)
        return not stream.is_closed()

    def _ephemeral_frames(self, stream: Stream, now: float) -> list[bytes]:
        """What a new stream of ephemeral channels gets at once (a clock: the time now)."""
        view, sources = stream.view, (self._channels[name].source for name in stream.channels)
        at_once = (source.frame(now) for source in sources if source is not None)
        frames = [view.format.tick(f) for f in at_once if view.passes_frame(f)]
        self._metrics.events_delivered += len(frames)
        return frames

    # -- publishing and fan-out --------------------------------------------------------------

    async def publish(self, drafts: Sequence[Draft], idempotency_key: str | None) -> Published:
        """Store and fan out. Raises ``BackplaneUnavailable`` or ``BackplaneFull``; then
        nothing was acknowledged."""
        published = await self._backplane.publish(drafts, idempotency_key)
        if not published.replayed:
            self._metrics.events_published += len(drafts)
        return published

    def publish_now(self, channel: str, body: bytes) -> tuple[str, int] | None:
        """``publish`` of one event without a key, in one call where the backplane can
        (``PublishNow``): its id and subscribers (no other process), or None: ``publish`` it."""
        if self._now is None or (ident := self._now.publish_now(channel, body)) is None:
            return None
        self._metrics.events_published += 1
        return ident, len(self._channels.get(channel, ()))

    async def close_channel(self, name: str) -> bool | None:
        """Close a finished channel (the demo's answers; the route is ``hub.api.closing``): True,
        False when closed already, None when deleted. Raises ``BackplaneUnavailable``, or
        ``NotImplementedError`` on a backplane without ``Closing`` (none shipped)."""
        if self._closer is None:
            raise NotImplementedError("this backplane cannot close channels")
        return await self._closer.close_channel(name)

    async def history(self, channels: Sequence[str], after: int | None, max_bytes: int) -> History:
        """A page of the retained events of ``channels`` after position ``after``: a read
        without a stream (a dialect's catch-up read, a check that a channel holds anything)."""
        return await self._backplane.history(channels, after, max_bytes)

    def deliver(self, events: Sequence[Event]) -> None:
        """Live events from the backplane: each tested once per filtered view on its channel,
        encoded once per view it passes (native: its frame as is), queued for its streams."""
        channels = self._channels
        writer = self._writer
        dirty = writer.dirty
        published_at = writer.published_at
        for event in events:
            channel = channels.get(event.channel)
            if channel is None:
                continue
            live = channel.live
            if channel.conflated:  # latest-wins: hub.conflation
                self._hooks.conflator.deliver(live, event)  # type: ignore[union-attr]
            else:
                for view, streams in live.items():
                    if view.filter is not None and not view.filter.passes(event):
                        continue
                    frame = event.frame if view.native else view.format.event(event)
                    fan_out(streams, frame, dirty, event.position)
            if channel.syncing:
                self._hold(channel, event)
            if live:
                published_at.append(event.published_at)
        if events:
            self._delivered = events[-1].position
        if dirty:
            writer.schedule()

    def _hold(self, channel: Channel, event: Event) -> None:
        """Keep a live event for the streams still reading their history, within bounds."""
        limit = self._settings.max_pending
        for stream in list(channel.syncing):
            if not stream.hold(event, limit):
                self._roster.drop(stream)

    def _emit(self, name: str, frame: bytes) -> None:
        """Fan out an ephemeral frame (a clock tick): no position, no history."""
        channel = self._channels.get(name)
        if channel is None:
            return
        channel.fan_out_control(frame, None, self._writer.dirty)
        self._writer.schedule()

    def lost(self, channel: str) -> None:
        """End the streams of a channel whose live order was broken; clients resume and get a
        ``reset`` if the history no longer reaches back far enough."""
        found = self._channels.get(channel)
        if found is not None:
            for stream in [*found.live_streams(), *found.syncing]:
                self._roster.close(stream)

    def deleted(self, name: str) -> None:
        """The channel was deleted (here or on another process): ``event: close`` on every
        stream of it, after whatever was queued before. A stream of that channel alone ends; one
        of several carries on with the others; one still replaying ends (told at reconnect)."""
        self._end_live(name, also_syncing=True)

    def closed(self, name: str) -> None:
        """The channel was closed (here or on another process), after every event published
        before: ``event: close`` on every live stream of it, which then ends (or carries on with
        its other channels). A stream still replaying is left alone: it finds the channel closed
        once its history and held events are written (``stream``)."""
        self._end_live(name, also_syncing=False)

    def _end_live(self, name: str, also_syncing: bool) -> None:
        channel = self._channels.get(name)
        if channel is None:
            return
        live = channel.live_streams()
        self._metrics.events_delivered += channel.fan_out_control(b"", name, self._writer.dirty)
        self._writer.flush()  # written now, before the streams that end are closed
        if also_syncing:
            for stream in [*channel.syncing]:
                self._roster.close(stream)
        for stream in live:
            self._roster.detach(stream, name)


def _beat_of(stream: Stream) -> bytes:
    return stream.view.format.heartbeat
