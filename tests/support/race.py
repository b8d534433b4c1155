"""Subscribers connecting while publishes pour in: the harness of the race tests of resume and
of ``replay=``, which differ only in how a subscriber connects and what it must receive."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tests.support.helpers import position, publish_batch, read_all_until
from tests.support.hubs import HubServer
from tests.support.sse_client import Message, Stream

__all__ = ["Joined", "Race", "race"]


@dataclass
class Joined:
    """One subscriber of the race: what it said when connecting, and what it received."""

    tag: Any
    #: how many receipts were in when its stream was live: all after it must reach it
    connected_at: int
    messages: list[Message]

    @property
    def ids(self) -> list[str]:
        return [m.id for m in self.messages]


@dataclass
class Race:
    #: every receipt (history, burst, the closing sentinel), in the order publishes returned
    receipts: list[dict[str, Any]]
    joined: list[Joined]
    #: subscribers that connected while publishes were still coming
    raced: int

    @property
    def everything(self) -> list[dict[str, Any]]:
        """Every receipt, in position order."""
        return sorted(self.receipts, key=lambda r: position(r["id"]))


#: connect(index, receipts so far, rng) -> (the live stream, a tag kept with its result)
Connect = Callable[[int, list[dict[str, Any]], random.Random], Awaitable[tuple[Stream, Any]]]


async def race(hub: HubServer, connect: Connect, seed: int, subscribers: int = 16) -> Race:
    """60 events of history on channels a and b; then three publishers (single events and
    two-channel batches) pour 450 more while ``subscribers`` connect at spread-out moments of
    the burst; a last event on a closes it, and each subscriber reads up to that event."""
    rng = random.Random(seed)
    receipts: list[dict[str, Any]] = []
    progress = asyncio.Condition()  # notified as receipts come in
    done = asyncio.Event()  # set once the last event is published
    sentinel = ""  # the id of that last event
    raced = 0
    for i in range(60):
        receipts.append(await hub.publish("a" if i % 3 else "b", f"h{i}"))

    async def publisher(name: str, count: int) -> None:
        for i in range(count):
            if i % 5 == 4:
                batch = [{"channel": c, "data": f"{name}{i}{c}"} for c in "ab"]
                receipts.extend((await publish_batch(hub, batch))["events"])
            else:
                receipts.append(await hub.publish(rng.choice("ab"), f"{name}{i}"))
            async with progress:
                progress.notify_all()

    async def subscriber(index: int) -> Joined:
        nonlocal raced
        async with asyncio.timeout(10), progress:  # connect while the publishers are busy
            await progress.wait_for(lambda: len(receipts) >= 60 + index * 25)
        stream, tag = await connect(index, receipts, rng)
        connected_at = len(receipts)
        await done.wait()
        raced += len(receipts) > connected_at + 1
        got = await read_all_until(stream, sentinel)
        await stream.close()
        return Joined(tag, connected_at, got)

    watchers = [asyncio.create_task(subscriber(i)) for i in range(subscribers)]
    await asyncio.gather(publisher("p", 150), publisher("q", 150), publisher("r", 150))
    sentinel = (await hub.publish("a", "end"))["id"]
    receipts.append({"id": sentinel, "channel": "a"})
    done.set()
    return Race(receipts, list(await asyncio.gather(*watchers)), raced)
