"""The soak's books and its publishers (that retry), and its sampling of the hubs.

``Ledger`` is what was accepted (a 202 receipt: channel, position, payload key); ``Figures``
counts what every client saw. A payload key is ``publisher * 1_000_000 + sequence``, carried in
the event's data, so a duplicate is recognised whatever id it came with.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field

import aiohttp
import orjson

from bench.soak_fleet import HubFleet

__all__ = ["Figures", "Ledger", "publisher", "sample_hubs", "scrape_drops"]

_KEY = 1_000_000
_PAD = "x" * 2500  # ~2.6 kB a frame: the never-readers pass max_pending_bytes soon


@dataclass
class Ledger:
    #: channel -> payload key -> position, for every event a publisher got a 202 for
    accepted: dict[str, dict[int, int]] = field(default_factory=lambda: defaultdict(dict))
    published: int = 0
    how: dict[int, str] = field(default_factory=dict)  # key -> how it came to be accepted


#: when the soak began (monotonic), for the timeline of what a missing event went through
T0 = time.monotonic()


@dataclass
class Figures:
    published: int = 0
    accepted: int = 0
    retries: int = 0  # publish attempts that failed (503, refused connection, timeout)
    replays_checked: int = 0  # deliberate retries of accepted events with the same key
    replays_wrong: int = 0  # ... that did not get the first receipt back
    refused: int = 0  # answers other than 202/503 (a bug)
    delivered: int = 0
    duplicated: int = 0
    reordered: int = 0
    resets: int = 0
    lost: int = 0
    reconnects: int = 0
    readers: int = 0
    never_readers: int = 0
    never_released: int = 0
    hub_kills: int = 0
    redis_restarts: int = 0
    dropped: dict[tuple[int, int], float] = field(default_factory=dict)
    peak_rss: dict[str, int] = field(default_factory=dict)
    final_rss: dict[str, int] = field(default_factory=dict)
    missing: list[int] = field(default_factory=list)  # for the lost figure, filled per reader

    def settle(self, ledger: Ledger) -> None:
        self.accepted = sum(len(keys) for keys in ledger.accepted.values())
        self.published = ledger.published
        self.lost = sum(self.missing)

    def lines(self) -> list[str]:
        mib = {name: (self.peak_rss[name] / 1024, self.final_rss.get(name, 0) / 1024)
               for name in sorted(self.peak_rss)}  # fmt: skip
        rss = ", ".join(f"{name} {peak:.1f}/{final:.1f}" for name, (peak, final) in mib.items())
        return [
            f"events published: {self.published}",
            f"events accepted: {self.accepted} (after {self.retries} failed attempts, retried "
            f"with the same Idempotency-Key; {self.refused} refused)",
            f"idempotent retries of accepted events: {self.replays_checked} "
            f"({self.replays_wrong} got another receipt)",
            f"events delivered: {self.delivered} to {self.readers} reading subscribers "
            f"({self.reconnects} reconnections with Last-Event-ID)",
            f"lost: {self.lost}",
            f"duplicated: {self.duplicated}",
            f"reordered: {self.reordered}",
            f"resets: {self.resets}",
            f"slow subscribers dropped by the hub: {int(sum(self.dropped.values()))} "
            f"(of them never-readers: {self.never_released} of {self.never_readers} released)",
            f"chaos: {self.hub_kills} hub SIGKILLs, {self.redis_restarts} Redis restarts",
            f"RSS MiB peak/final: {rss}",
        ]


async def publisher(
    number: int, channels: list[str], fleet: HubFleet, ledger: Ledger, figures: Figures,
    rate: float, seconds: float,
) -> None:  # fmt: skip
    """Publish at ``rate`` for ``seconds``; retry each event with its key until accepted."""
    timeout = aiohttp.ClientTimeout(total=5)
    run = f"{random.randrange(1 << 30):x}"
    async with aiohttp.ClientSession(timeout=timeout) as session:
        start = time.monotonic()
        sequence = 0
        while time.monotonic() - start < seconds:
            due = start + sequence / rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            sequence += 1
            key = number * _KEY + sequence
            channel = random.choice(channels)
            body = orjson.dumps({"data": {"k": key, "pad": _PAD}})
            headers = {"Content-Type": "application/json", "Idempotency-Key": f"{run}-{key}"}
            ledger.published += 1
            receipt = None
            began = time.monotonic()
            attempt = 0
            while attempt < 200:  # ~1 minute of retries at most
                attempt += 1
                url = random.choice(fleet.urls())
                try:
                    async with session.post(
                        f"{url}/channels/{channel}/events", data=body, headers=headers
                    ) as response:
                        if response.status == 202:
                            receipt = await response.json()
                            replayed = response.headers.get("Idempotent-Replayed") == "true"
                            break
                        if response.status != 503:
                            figures.refused += 1
                            print(f"publish {response.status}: {await response.text()}")
                            break
                except (aiohttp.ClientError, TimeoutError, OSError):
                    pass
                figures.retries += 1
                await asyncio.sleep(random.uniform(0.1, 0.4))
            if receipt is None:
                continue
            ledger.accepted[channel][key] = int(receipt["id"].split(":", 1)[0])
            ledger.how[key] = (
                f"accepted at +{time.monotonic() - T0:.1f} s after {attempt} failed attempts "
                f"(first at +{began - T0:.1f} s){', replayed' if replayed else ''}"
            )
            if not replayed and random.random() < 0.05:
                # a retry after a lost answer: the same key must give the same receipt
                with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                    async with session.post(
                        f"{random.choice(fleet.urls())}/channels/{channel}/events",
                        data=body, headers=headers,
                    ) as again:  # fmt: skip
                        if again.status == 202:
                            figures.replays_checked += 1
                            same = (await again.json())["id"] == receipt["id"]
                            figures.replays_wrong += not same


async def scrape_drops(fleet: HubFleet, figures: Figures) -> None:
    async with aiohttp.ClientSession() as session:
        for index in range(len(fleet.servers)):
            value = await fleet.metric(session, index, "hub_subscribers_dropped_total")
            if value is not None:
                figures.dropped[(index, fleet.incarnation[index])] = value


async def sample_hubs(fleet: HubFleet, figures: Figures) -> None:
    """RSS of each hub slot every 0.5 s (peak), its drop counter every 2 s (per incarnation)."""
    async with aiohttp.ClientSession() as session:
        turn = 0
        while True:
            for index, name in enumerate(fleet.names):
                rss = fleet.rss_kib(index)
                figures.peak_rss[name] = max(figures.peak_rss.get(name, 0), rss)
                if turn % 4 == 0:
                    value = await fleet.metric(session, index, "hub_subscribers_dropped_total")
                    if value is not None:
                        figures.dropped[(index, fleet.incarnation[index])] = value
            turn += 1
            await asyncio.sleep(0.5)
