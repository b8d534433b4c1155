"""The ``Hooks`` of the channel registry (``hub.channel``): latest-wins flags, presence, webhooks.

One object so that the registry and the roster make one call where a channel opens or closes
or a stream joins or leaves one, whichever of the three features are configured; the hub sets
it only when one is (``make_hooks``), so without them nothing more runs per stream.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub.census import Census
from hub.config import Config
from hub.conflation import Conflator
from hub.metrics import Metrics
from hub.patterns import Patterns
from hub.presence import PresenceChannels, Publish
from hub.tasks import Tasks
from hub.webhooks import Webhooks
from hub.writer import Writer

if TYPE_CHECKING:
    from hub.channel import Channel
    from hub.stream import Stream

__all__ = ["ChannelHooks", "make_hooks"]


class ChannelHooks:
    """The three features, each None unless configured (the conflator is always there)."""

    def __init__(
        self,
        config: Config,
        writer: Writer,
        tasks: Tasks,
        publish: Publish,
        census: Census,
        metrics: Metrics,
    ) -> None:
        self.conflator = Conflator(config.conflate, writer, tasks)
        if self.conflator.active:
            writer.spare = self.conflator.spare
        self.presence: PresenceChannels | None = None
        if config.presence:
            private = Patterns(config.private_channels) if config.private_channels else None
            self.presence = PresenceChannels(
                config.presence, private, publish, census.subscriber_count, config.max_event_bytes
            )
        self.webhooks: Webhooks | None = None
        if config.webhook_url:
            self.webhooks = Webhooks(
                config.webhook_url,
                config.webhook_secret,
                config.webhook_grace,
                census.has_local,
                census.remote_count,
                metrics,
            )

    def start(self, tasks: Tasks) -> None:
        if self.presence is not None:
            tasks.spawn(self.presence.publish_forever(), "presence")
        if self.webhooks is not None:
            tasks.spawn(self.webhooks.decide_forever(), "webhook-decisions")
            tasks.spawn(self.webhooks.send_forever(), "webhooks")

    def opened(self, channel: Channel) -> None:
        name = channel.name
        channel.conflated = self.conflator.matches(name)
        channel.watched = self.presence is not None and self.presence.watches(name)
        if self.webhooks is not None:
            self.webhooks.opened(name)

    def closed(self, name: str) -> None:
        if self.webhooks is not None:
            self.webhooks.closed(name)

    def joined(self, name: str, stream: Stream, who: str | None) -> None:
        if self.presence is not None:
            self.presence.joined(name, stream, who)

    def left(self, name: str, stream: Stream) -> None:
        if self.presence is not None:
            self.presence.left(name, stream)


def make_hooks(
    config: Config, writer: Writer, tasks: Tasks, publish: Publish, census: Census, metrics: Metrics
) -> ChannelHooks | None:
    """The hooks, or None when no channel is latest-wins or tracked and no webhook is sent."""
    if not (config.conflate or config.presence or config.webhook_url):
        return None
    return ChannelHooks(config, writer, tasks, publish, census, metrics)
