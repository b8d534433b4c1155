"""NATS backplane: subscriber counts shared by the hub processes of one subject prefix.

Core NATS, not JetStream: every ``COUNTS_INTERVAL`` each process publishes its counts on
``P_counts`` and keeps the latest counts of every other process for three intervals; a process
that closes says so. The round also probes JetStream (a stream info request), so the health of
the request path is noticed, and its return, even while nobody publishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from hub.backplane import Counts
from hub.backplane.nats_link import UNAVAILABLE, describe

if TYPE_CHECKING:
    from hub.backplane.nats import NatsBackplane

__all__ = ["COUNTS_INTERVAL", "NatsPresence"]

log = logging.getLogger("hub.backplane")

COUNTS_INTERVAL = 2.0


class NatsPresence:
    def __init__(self, backplane: NatsBackplane) -> None:
        self._bp = backplane
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
            if peer == self._bp.instance:
                return
            if news.get("leave"):
                self._peers.pop(peer, None)
                return
            counts = Counts({str(k): int(v) for k, v in news["c"].items()}, int(news["s"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            return  # not one of ours
        self._peers[peer] = (time.monotonic() + 3 * COUNTS_INTERVAL, counts)

    async def exchange_forever(self) -> None:
        failing = False
        while True:
            try:
                await self._exchange()
            except UNAVAILABLE as problem:
                if not failing:
                    log.warning("NATS counts: %s; retrying", describe(problem))
                failing = True
                self._sub = None
                self._bp.link.lost("requests", problem)
            else:
                failing = False
                self._bp.link.regained("requests")
            await asyncio.sleep(COUNTS_INTERVAL)

    async def _exchange(self) -> None:
        nc = self._bp.require()
        if self._sub is None:
            self._sub = await nc.subscribe(self._bp.subjects.counts, cb=self._received)
        local = self._local()
        channels = {k: v for k, v in local.channels.items() if v}
        news = {"i": self._bp.instance, "c": channels, "s": local.streams}
        await nc.publish(self._bp.subjects.counts, orjson.dumps(news))
        await self._bp.stream_state()

    async def leave(self) -> None:
        nc = self._bp.nc
        if nc is not None and nc.is_connected:
            with contextlib.suppress(*UNAVAILABLE):
                news = {"i": self._bp.instance, "leave": True}
                await nc.publish(self._bp.subjects.counts, orjson.dumps(news))
                await nc.flush(timeout=1)
