"""Whether a new stream may open: the subscribe rate and the stream counts, for every dialect.

One ``Admission`` per app, shared by every subscribe route (native, AI SDK, Durable Streams), so
an address's ``subscribe_rate`` and ``max_client_streams`` count its streams on all of them. A
single hub counts here, in memory (``hub.limits``); a worker of several asks the supervisor
(``hub.shared_limits``): one request that spends the subscribe rate and takes a seat among the
address's streams and the hub's ``max_subscribers``, atomically, for the whole hub. Either way a
route calls ``admit`` before its stream and ``leave`` after it, whatever ended it. With workers,
``max_client_channels`` is counted there too (the stream's channels go with its seat), since a
worker cannot tell a channel new to the hub from one new to itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from hub.config import Config
from hub.limits import ClientCounts, TokenBuckets
from hub.shared_limits import SharedLimits

__all__ = ["Admission", "Refusal"]


class Refusal(NamedTuple):
    """A stream turned away: by which setting, and the seconds before it may try again."""

    setting: str
    wait: float

    @property
    def per_address(self) -> bool:
        """A limit of the client's own (429 where a dialect answers JSON), not the hub's (503)."""
        return self.setting != "max_subscribers"

    @property
    def why(self) -> str:
        if self.setting == "subscribe_rate":
            return "too many new streams from your address"
        if self.setting == "max_client_streams":
            return "too many streams from your address"
        if self.setting == "max_client_channels":
            return "too many channels from your address"
        return f"the hub is at capacity ({self.setting} reached)"

    @property
    def named(self) -> str:
        """``why`` with the setting (what the native route's ``retry:`` comment says)."""
        return f"{self.why} ({self.setting})" if self.per_address else self.why


class Admission:
    def __init__(self, config: Config, clients: ClientCounts, shared: SharedLimits | None) -> None:
        self._rate = TokenBuckets(config.subscribe_rate, config.subscribe_burst)
        self._clients = clients
        self._shared = shared
        #: a worker's channels go with its seat while max_client_channels is on
        self._channels = bool(config.max_client_channels) and shared is not None
        if self._channels:
            clients.count_channels_elsewhere()  # the supervisor's count, not this worker's

    async def admit(self, client: str, channels: Sequence[str]) -> Refusal | None:
        """Count a new stream of ``client`` on ``channels``: None, or why it may not open
        (nothing counted)."""
        if self._shared is not None:
            refused = await self._shared.seat(client, channels if self._channels else ())
            return None if refused is None else Refusal(*refused)
        wait = self._rate.take(client)
        if wait:
            return Refusal("subscribe_rate", wait)
        if not self._clients.open_stream(client):
            return Refusal("max_client_streams", 0.0)
        return None  # max_subscribers: counted by the roster, which holds every stream here

    def leave(self, client: str, channels: Sequence[str]) -> None:
        """A stream admitted has ended (or never opened)."""
        if self._shared is not None:
            self._shared.unseat(client, channels if self._channels else ())
        else:
            self._clients.close_stream(client)
