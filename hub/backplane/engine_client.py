"""``engine+unix:///path``: a worker's backplane, the engine's memory backplane through a socket.

Every method of ``Backplane`` and of the optional ``Tickets``, ``Deletion``, ``Closing`` and
``Catalog`` is one request to the engine (``hub.backplane.engine_server``, which says why the
guarantees of one process hold for the whole hub), answered in order on one link
(``hub.backplane.engine_link``). The engine pushes the events of the channels this worker
follows, in position order, and deletions and closes in order with them; ``deleted()`` and
``closed()``, which must answer without awaiting, read the marks this proxy keeps from the
follow answers and those pushes (a follow answer names the channels deleted or closed by then,
and a push every later one, so the copy is never behind what ``follow`` saw).

``Presence``, ``Totals`` and ``Health``: every second the worker reports its subscriber counts
and counters, and the answer brings the other workers' sums and the engine's state. While the
link is down the worker is not ready (``/readyz``), every request raises
``BackplaneUnavailable`` and the streams of the followed channels end (their clients resume on
a worker whose link is up); the engine going away means the hub is going away (the supervisor
runs it), so the worker does not wait for it long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from hub import worker
from hub.backplane import (
    BackplaneState,
    BackplaneUnavailable,
    Counts,
    History,
    Listener,
    Published,
    Reset,
)
from hub.backplane.engine_link import EngineLink
from hub.backplane.engine_reports import Reports
from hub.backplane.engine_streams import StreamsFront
from hub.backplane.engine_wire import drafts_out, events_in, record, socket_path
from hub.backplane.tombstones import Tombstones
from hub.events import Draft

if TYPE_CHECKING:
    from hub.config import Config

__all__ = ["SCHEME", "EngineBackplane"]

SCHEME = "engine+unix"
#: Seconds between two attempts to reach the engine while the link is down.
RECONNECT_INTERVAL = 0.5

log = logging.getLogger("hub.backplane")


class EngineBackplane(StreamsFront):
    """``Backplane`` with ``Presence``, ``Totals``, ``Health``, ``Catalog``, ``Tickets``,
    ``Deletion``, ``Closing``, ``Since`` and ``Streams`` (``engine_streams``), all answered by
    the engine."""

    def __init__(self, config: Config) -> None:
        self._path = config.backplane.removeprefix(f"{SCHEME}://")
        self._worker = worker.number()
        self._listener: Listener | None = None
        self._link: EngineLink | None = None
        self._followed: set[str] = set()
        self._joining: dict[str, asyncio.Future[int]] = {}
        self._deleted = Tombstones(config.history_ttl)
        self._closed = Tombstones(config.history_ttl)
        self._reports = Reports()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, listener: Listener) -> None:
        self._listener = listener
        with contextlib.suppress(OSError, BackplaneUnavailable):
            await self._connect()
        self._task = asyncio.create_task(self._keep_up(), name="engine-link")

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        listener = self._listener  # set by start(), before the first connect
        deliver = listener.deliver if listener is not None else lambda events: None
        _, link = await loop.create_unix_connection(
            lambda: EngineLink(self._pushed, self._lost, deliver), socket_path(self._path)
        )
        self._link = link
        await link.call("hello", self._worker)
        await self._reports.report(link)

    async def _keep_up(self) -> None:
        """Reports while the link is up; reconnect while it is down."""
        while True:
            link = self._link
            if link is not None and link.up:
                await self._reports.keep(link)
            await asyncio.sleep(RECONNECT_INTERVAL)
            with contextlib.suppress(OSError, BackplaneUnavailable):
                await self._connect()

    async def close(self) -> None:
        self._closing = True
        self._reports.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._link is not None:
            self._link.close()
            self._link = None

    def _call(self, method: str, *args: Any) -> asyncio.Future[Any]:
        if self._link is None:
            raise BackplaneUnavailable("the engine is not reachable")
        return self._link.call(method, *args)

    # -- Backplane ---------------------------------------------------------------------------

    async def publish(self, drafts: Sequence[Draft], idempotency_key: str | None) -> Published:
        link = self._link
        if link is None:
            raise BackplaneUnavailable("the engine is not reachable")
        if len(drafts) == 1:  # the common publish: drafts_out() written out
            channel, body = drafts[0]
            wire = [[channel, body.decode("latin-1")]]
        else:
            wire = drafts_out(drafts)
        ids, replayed = await link.call("publish", wire, idempotency_key)
        return record(Published, (ids, replayed))

    async def history(
        self, channels: Sequence[str], after: int | None, max_bytes: int, *, continued: bool = False
    ) -> History:
        events, reset, more = await self._call(
            "history", list(channels), after, max_bytes, continued
        )
        return History(events_in(events), None if reset is None else Reset(*reset), more)

    async def follow(self, channels: Sequence[str]) -> int:
        """One request for the channels not followed yet; those another follow asked for are
        waited for (shielded: a subscriber that leaves cancels no one else's join)."""
        new = [c for c in channels if c not in self._followed and c not in self._joining]
        if new:
            join = asyncio.ensure_future(self._join(new))
            for name in new:
                self._joining[name] = join
        waits = {id(j): j for c in channels if (j := self._joining.get(c)) is not None}
        frontiers = [await asyncio.shield(join) for join in waits.values()]
        return max(frontiers, default=0)

    async def _join(self, channels: list[str]) -> int:
        me = asyncio.current_task()
        try:
            frontier, marks = await self._call("follow", channels)
        finally:
            # those unfollowed meanwhile are left out (the engine had the unfollow after this)
            still = [name for name in channels if self._joining.get(name) is me]
            for name in still:
                del self._joining[name]
        for name, (deleted, closed) in marks.items():
            self._set_marks(name, deleted, closed)
        self._followed.update(still)
        self._reports.changed()
        return int(frontier)

    def unfollow(self, channel: str) -> None:
        self._followed.discard(channel)
        self._joining.pop(channel, None)
        if self._link is not None:
            self._link.tell("unfollow", channel)
        self._reports.changed()

    def _pushed(self, message: list[Any]) -> None:
        listener = self._listener
        if listener is None:
            return
        kind = message[1]  # not "d": the link hands events to the listener's deliver itself
        if kind == "x":
            self._set_marks(*message[2:5])
            listener.deleted(message[2])
        elif kind == "c":
            self._set_marks(*message[2:5])
            listener.closed(message[2])
        elif kind == "m":
            self._set_marks(*message[2:5])
        elif kind == "l":
            listener.lost(message[2])
        elif kind == "n":
            self._reports.heard(message[2], message[3])

    def _set_marks(self, channel: str, deleted: float | None, closed: float | None) -> None:
        """The engine's word on a channel's marks: kept (until when) or lifted (None)."""
        for marks, until in ((self._deleted, deleted), (self._closed, closed)):
            if until is None:
                marks.lift(channel)
            else:
                marks.mark_until(channel, until)

    def _lost(self) -> None:
        """The link ended: what was followed can no longer be delivered in order."""
        followed = [*self._followed, *self._joining]
        self._followed.clear()
        self._joining.clear()
        if self._closing:
            return
        log.error(
            "the link to the engine ended (the hub is stopping, or its supervisor died); "
            "%d channel(s) end their streams",
            len(followed),
        )
        if self._listener is not None:
            for name in followed:
                self._listener.lost(name)

    # -- the optional interfaces -------------------------------------------------------------

    async def channels(self) -> dict[str, str]:
        found: dict[str, str] = await self._call("channels")
        return found

    async def position_at(self, when: float) -> int | None:
        found: int | None = await self._call("position_at", when)
        return found

    async def issue_ticket(self, ticket: str, channels: Sequence[str], ttl: float) -> None:
        await self._call("issue", ticket, list(channels), ttl)

    async def spend_ticket(self, ticket: str) -> list[str] | None:
        found: list[str] | None = await self._call("spend", ticket)
        return found

    async def delete_channel(self, channel: str, anyway: bool) -> bool | None:
        done: bool | None
        done, deleted, closed = await self._call("delete", channel, anyway)
        self._set_marks(channel, deleted, closed)
        return done

    def deleted(self, channels: Sequence[str]) -> list[str]:
        return self._deleted.among(channels)

    async def close_channel(self, channel: str) -> bool | None:
        done: bool | None
        done, deleted, closed = await self._call("close", channel)
        self._set_marks(channel, deleted, closed)
        return done

    def closed(self, channels: Sequence[str]) -> list[str]:
        return self._closed.among(channels)

    def share_counts(self, local: Callable[[], Counts]) -> None:
        self._reports.local_counts = local

    def remote_counts(self) -> Counts:
        return self._reports.remote

    def share_totals(self, local: Callable[[], dict[str, Any]]) -> None:
        self._reports.local_totals = local

    async def others_totals(self) -> dict[str, Any]:
        """Asked at each scrape (the others' reports are a second old at most)."""
        return await self._reports.fetch_totals(self._link)

    @property
    def coordinator_link(self) -> EngineLink | None:
        """The link of the hub-wide limits too (``hub.shared_limits``): one link a worker. (A
        worker on Redis or NATS has an ``EngineBackplane`` as well, as its coordinator: on the
        supervisor's coordination-only engine, following nothing; ``hub.app``.)"""
        return self._link

    def state(self) -> BackplaneState:
        up = self._link is not None and self._link.up
        detail = {"engine": self._path, **self._reports.detail}
        # the memory backplane, in the engine: what the operator configured
        return BackplaneState(kind="memory", connected=up, detail=detail)
