"""The engine: the memory backplane of a hub of several workers, in the supervisor's process.

With ``workers`` > 1 and the memory backplane, each worker process talks to one
``MemoryBackplane`` here, over a Unix socket (``hub.backplane.engine_wire``), through its proxy
(``hub.backplane.engine_client``). Why every guarantee of one process holds hub-wide: there is
one store, and it runs each request in one step on this event loop, as it does inside a single
hub. Positions come from its one sequence; history, idempotency keys, tickets, tombstones and
closed marks live only here; a publish stores its events and queues their frames for the
workers that follow their channels *before* its answer, in one step. Each worker's link is one
ordered byte stream, so a worker receives every event of its followed channels once, in position
order, and a deletion or a close after the events stored before it; a follow is answered after
the link is registered on the channels, so every event stored after that answer reaches the
worker, and the answer's frontier (the newest position) bounds those stored before.

An event's frame is encoded once per set of links that receive it (usually: once); the frames a
request produced are written when its data is processed, one write per link
(``engine_outbox``). A dead worker's follows go with its link; its counters stay in the sums
(``hub.backplane.totals``).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Sequence
from types import CoroutineType
from typing import TYPE_CHECKING, Any, cast

import orjson

from hub.backplane import History, Published
from hub.backplane.engine_limits import HubLimits, limit_methods, served
from hub.backplane.engine_outbox import Outbox
from hub.backplane.engine_streams import stream_methods
from hub.backplane.engine_sums import others_counts, others_totals, pushed_counts
from hub.backplane.engine_wire import (
    HEADER,
    Frames,
    drafts_in,
    error_of,
    events_frame,
    events_out,
    frame,
    marks_out,
    pushes,
    run_now,
    socket_path,
)
from hub.backplane.memory import MemoryBackplane
from hub.events import Event
from hub.metrics import add_snapshots

if TYPE_CHECKING:
    from hub.config import Config

__all__ = ["EngineServer"]

log = logging.getLogger("hub.engine")
_dumps = orjson.dumps
_loads = orjson.loads
_pack = HEADER.pack
_length = HEADER.unpack_from


class _Link(asyncio.Protocol):
    """One worker's connection: what it follows, its last counts and counters."""

    def __init__(self, engine: EngineServer) -> None:
        self.engine = engine
        self.transport: asyncio.Transport | None = None
        self.frames = Frames()
        self.out: list[bytes] = []
        self.channels: set[str] = set()
        self.worker = 0
        self.counts: dict[str, int] = {}
        self.streams = 0
        self.totals: dict[str, Any] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are no subclass
        self.engine.links.add(self)

    def data_received(self, data: bytes) -> None:
        engine = self.engine
        outbox = engine.outbox
        outbox.receiving = True
        try:
            frames = self.frames
            if not frames.rest and len(data) >= 4 and _length(data)[0] == len(data) - 4:
                engine.handle(self, _loads(memoryview(data)[4:]))  # one request: no feed()
            else:
                for message in frames.feed(data):
                    engine.handle(self, message)
        except ValueError as problem:  # not our wire: drop the link
            log.error("engine: a broken link from worker %s: %s", self.worker, problem)
            if self.transport is not None:
                self.transport.abort()
        finally:
            outbox.receiving = False
        if outbox.dirty:
            outbox.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.engine.drop(self)


class EngineServer:
    """The memory backplane served on a Unix socket at ``path``; the ``Listener`` of it."""

    def __init__(self, config: Config, path: str, *, store: bool = True) -> None:
        self.path = path
        self.backplane = MemoryBackplane(config)
        self.limits = HubLimits(config)
        self.links: set[_Link] = set()
        self._followers: dict[str, set[_Link]] = {}
        self.outbox = Outbox()
        self._retired: dict[str, Any] = {}  # the counters of the workers that ended
        self._server: asyncio.AbstractServer | None = None
        self._methods: dict[str, Callable[..., Any]] = {
            "hello": self._hello,
            "publish": self._publish,
            "history": self._history,
            "follow": self._follow,
            "unfollow": self._unfollow,
            "channels": self.backplane.channels,
            "position_at": self.backplane.position_at,
            "issue": self.backplane.issue_ticket,
            "spend": self.backplane.spend_ticket,
            "delete": self._delete,
            "close": self._close,
            "report": self._report,
            "counts": self._counts,
            "totals": self._totals,
            **stream_methods(self),
            **limit_methods(self.limits, lambda: self._link),
        }
        self._methods = served(self._methods, store)  # False: coordination (Redis, NATS)
        self._link: _Link | None = None  # the link whose request runs now

    async def start(self) -> None:
        await self.backplane.start(self)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(lambda: _Link(self), socket_path(self.path))
        if not self.path.startswith("@"):  # the workers run as this user; nobody else may publish
            os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for link in list(self.links):
                if link.transport is not None:
                    link.transport.abort()
            await self._server.wait_closed()
            self._server = None
        await self.backplane.close()

    # -- requests ----------------------------------------------------------------------------

    def handle(self, link: _Link, message: list[Any]) -> None:
        """One request, inside ``_Link.data_received``: its answer goes out with the data's."""
        ident = message[0]
        method = message[1]
        self._link = link
        try:
            result = self._methods[method](*message[2:])
            if type(result) is CoroutineType:  # a memory backplane method (no ABC check: hot)
                result = run_now(result)
        except Exception as problem:  # every error goes back: the worker decides
            kind, detail = error_of(problem)
            if kind == "unavailable":
                log.exception("engine: %s failed", method)
            result, ident = [kind, detail], -ident
        finally:
            self._link = None
        if ident:  # frame() and queue() written out (receiving: no flush to schedule)
            body = _dumps([ident, result] if ident > 0 else [ident, *result])
            link.out.append(_pack(len(body)) + body)
            self.outbox.dirty.add(link)

    def _hello(self, worker: int) -> int:
        assert self._link is not None
        self._link.worker = worker
        return os.getpid()

    def _publish(self, drafts: list[list[str]], key: str | None) -> list[Any]:
        published: Published = run_now(self.backplane.publish(drafts_in(drafts), key))
        return [published.ids, published.replayed]

    def _history(
        self, channels: list[str], after: int | None, max_bytes: int, continued: bool
    ) -> list[Any]:
        page: History = run_now(
            self.backplane.history(channels, after, max_bytes, continued=continued)
        )
        reset = None if page.reset is None else [page.reset.reason, page.reset.oldest_id]
        return [events_out(page.events), reset, page.more]

    def _follow(self, channels: list[str]) -> list[Any]:
        link = self._link
        assert link is not None
        for name in channels:
            self._followers.setdefault(name, set()).add(link)
        link.channels.update(channels)
        last, deleted, closed = self.backplane.marks(channels)
        return [last, {name: marks_out(name, deleted, closed) for name in channels}]

    def marks(self, channel: str) -> list[float | None]:
        """Until when the channel's tombstone and closed mark stand (None: not)."""
        _, deleted, closed = self.backplane.marks([channel])
        return marks_out(channel, deleted, closed)

    def _delete(self, channel: str, anyway: bool) -> list[Any]:
        """Deleted or not, and its marks (the deleting worker answers ``deleted()`` for it at
        once, followed or not)."""
        return [run_now(self.backplane.delete_channel(channel, anyway)), *self.marks(channel)]

    def _close(self, channel: str) -> list[Any]:
        return [run_now(self.backplane.close_channel(channel)), *self.marks(channel)]

    def streams_call(self, method: Callable[..., Any], channel: str, *args: Any) -> list[Any]:
        """A ``Streams`` request (``hub.backplane.engine_streams``): its answer and the
        channel's marks, which every follower gets too (a create lifts a deletion's)."""
        result = method(channel, *args)
        marks = self.marks(channel)
        self._push(channel, frame([0, "m", channel, *marks]))
        return [result, *marks]

    def _unfollow(self, channel: str) -> None:
        self._forget(cast(_Link, self._link), channel)

    def _report(self, counts: dict[str, int], streams: int, totals: dict[str, Any]) -> list[Any]:
        """A worker's counts and counters in; the others' sums and the engine's state out."""
        link = self._link
        assert link is not None
        link.counts, link.streams, link.totals = counts, streams, totals
        channels, others = others_counts(self.links, link)
        state = self.backplane.state().detail | {
            "workers": sum(1 for one in self.links if one.worker)
        }
        return [channels, others, self._totals(), state]

    def _counts(self, counts: dict[str, int], streams: int) -> None:
        """A worker's counts changed: every worker gets the others' sums (``n``)."""
        link = self._link
        assert link is not None
        link.counts, link.streams = counts, streams
        for other, channels, others in pushed_counts(self.links):
            self.outbox.queue(cast(_Link, other), frame([0, "n", channels, others]))

    def _totals(self) -> dict[str, Any]:
        return others_totals(self.links, self._retired, self._link)

    # -- the listener: pushes to the links that follow ---------------------------------------

    def deliver(self, events: Sequence[Event]) -> None:
        followers = self._followers
        if len(events) == 1:  # the common push
            links = followers.get(events[0].channel)
            if links:
                self.outbox.queue_all(links, events_frame(events))
            return
        for link, data in pushes(events, followers):
            self.outbox.queue(link, data)

    def lost(self, channel: str) -> None:
        self._push(channel, frame([0, "l", channel]))

    def deleted(self, channel: str) -> None:
        self._push(channel, frame([0, "x", channel, *self.marks(channel)]))

    def closed(self, channel: str) -> None:
        self._push(channel, frame([0, "c", channel, *self.marks(channel)]))

    def _push(self, channel: str, data: bytes) -> None:
        self.outbox.queue_all(self._followers.get(channel, ()), data)

    # -- links -----------------------------------------------------------------------------

    def drop(self, link: _Link) -> None:
        """A worker went away: its follows end; its counters stay in the sums."""
        self.links.discard(link)
        self.outbox.dirty.discard(link)
        for name in list(link.channels):
            self._forget(link, name)
        self._retired = add_snapshots(self._retired, link.totals)
        self.limits.drop(link)
        if link.worker:
            log.info("engine: worker %d left", link.worker)

    def _forget(self, link: _Link, channel: str) -> None:
        link.channels.discard(channel)
        links = self._followers.get(channel)
        if links is not None:
            links.discard(link)
            if not links:
                del self._followers[channel]
