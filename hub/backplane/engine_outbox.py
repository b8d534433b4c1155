"""The engine's output: the frames queued for each worker's link, written once per link.

The byte half of ``hub.backplane.engine_server``. A request's answer and the pushes it caused
(a publish's events to every worker that follows their channels) are queued while the link's
data is processed (``receiving``) and written when it is done, one write per link: a worker
wakes once for its answer and its pushes together, and a pipelined burst of requests costs one
write, not one each. A frame queued outside a request (a deletion's push from a timer) is
written on the next loop pass. The order of a link's frames is the order they were queued,
which is the order the engine ran what made them: each worker's one ordered stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Protocol

__all__ = ["Outbox", "Peer"]


class Peer(Protocol):
    """A worker's link as the outbox sees it: its queued frames and its transport."""

    out: list[bytes]
    transport: asyncio.Transport | None


class Outbox:
    def __init__(self) -> None:
        self.dirty: set[Peer] = set()  # the links with frames queued
        #: while a link's data is processed: its frames are written when it is done (flush)
        self.receiving = False

    def queue(self, link: Peer, data: bytes) -> None:
        link.out.append(data)
        if not self.dirty and not self.receiving:  # else flush() runs at the end of the data
            asyncio.get_running_loop().call_soon(self.flush)
        self.dirty.add(link)

    def queue_all(self, links: Iterable[Peer], data: bytes) -> None:
        """The same frame for several links (a push to every follower: encoded once)."""
        if not self.dirty and not self.receiving:
            asyncio.get_running_loop().call_soon(self.flush)
        for link in links:
            link.out.append(data)
            self.dirty.add(link)

    def flush(self) -> None:
        dirty, self.dirty = self.dirty, set()
        for link in dirty:
            out, link.out = link.out, []
            if link.transport is not None and not link.transport.is_closing():
                link.transport.write(out[0] if len(out) == 1 else b"".join(out))
