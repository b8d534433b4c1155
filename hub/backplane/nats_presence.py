"""NATS backplane: subscriber counts shared by the hub processes of one subject prefix.

Core NATS, not JetStream: every ``COUNTS_INTERVAL`` each process publishes its counts on
``P_counts`` and keeps the latest counts of every other process for three intervals; a process
that closes says so. The round also probes JetStream (a stream info request), so the health of
the request path is noticed, and its return, even while nobody publishes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import orjson
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from hub.backplane import Counts
from hub.backplane.lifecycle import retry_forever
from hub.backplane.nats_connection import Connection
from hub.backplane.nats_link import UNAVAILABLE

__all__ = ["COUNTS_INTERVAL", "NatsPresence"]

COUNTS_INTERVAL = 2.0


class NatsPresence:
    """``instance``: this process's id among the others."""

    def __init__(self, connection: Connection, instance: str) -> None:
        self._bp = connection
        self._instance = instance
        self._local: Callable[[], Counts] = Counts
        self._peers: dict[str, tuple[float, Counts]] = {}
        self._sub: Subscription | None = None

    def share(self, local: Callable[[], Counts]) -> None:
        self._local = local

    @property
    def remote(self) -> Counts:
        now = time.monotonic()
        channels: dict[str, int] = {}
        streams = 0
        for peer, (until, counts) in list(self._peers.items()):
            if until < now:
                del self._peers[peer]
                continue
            streams += counts.streams
            for name, count in counts.channels.items():
                channels[name] = channels.get(name, 0) + count
        return Counts(channels, streams)

    async def _received(self, msg: Msg) -> None:
        try:
            news = orjson.loads(msg.data)
            peer = str(news["i"])
            if peer == self._instance:
                return
            if news.get("leave"):
                self._peers.pop(peer, None)
                return
            counts = Counts({str(k): int(v) for k, v in news["c"].items()}, int(news["s"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            return  # not one of ours
        self._peers[peer] = (time.monotonic() + 3 * COUNTS_INTERVAL, counts)

    async def exchange_forever(self) -> None:
        """Exchange counts until cancelled; a failure marks the request path lost until a round
        works again (the round is also that path's probe)."""
        interval = COUNTS_INTERVAL
        await retry_forever(
            self._exchange,
            name="NATS counts",
            link=self._bp.link,
            witness="requests",
            errors=UNAVAILABLE,
            backoff=lambda _: interval,
            every=interval,
            failed=self._resubscribe,
        )

    def _resubscribe(self, _: BaseException) -> None:
        self._sub = None  # the subscription may have gone with the connection

    async def _exchange(self) -> None:
        nc = self._bp.require()
        if self._sub is None:
            self._sub = await nc.subscribe(self._bp.subjects.counts, cb=self._received)
        local = self._local()
        channels = {k: v for k, v in local.channels.items() if v}
        news = {"i": self._instance, "c": channels, "s": local.streams}
        await nc.publish(self._bp.subjects.counts, orjson.dumps(news))
        await self._bp.stream_state()

    async def leave(self) -> None:
        nc = self._bp.nc
        if nc is not None and nc.is_connected:
            with contextlib.suppress(*UNAVAILABLE):
                news = {"i": self._instance, "leave": True}
                await nc.publish(self._bp.subjects.counts, orjson.dumps(news))
                await nc.flush(timeout=1)
