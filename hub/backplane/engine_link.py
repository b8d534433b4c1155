"""A worker's link to its engine: requests pipelined by id, answers matched, pushes handed on.

The byte half of ``hub.backplane.engine_client``: one Unix socket connection, frames out
(each written at once: a request is waited for) and in
(answers resolve their request's future; pushes go to ``on_events`` and ``on_push`` in the
order they came, which is the engine's order).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Sequence
from typing import Any, cast

import orjson

from hub.backplane import BackplaneUnavailable
from hub.backplane.engine_wire import ERRORS, HEADER, Frames, events_in, frame, record
from hub.events import Event

__all__ = ["EngineLink"]

_dumps = orjson.dumps
_loads = orjson.loads
_pack = HEADER.pack
_length = HEADER.unpack_from


class EngineLink(asyncio.Protocol):
    """``on_events(events)`` for every push of events (as ``Event``s, made here: the hot push
    is one call from the socket to the hub's ``deliver``), ``on_push(message)`` for every other
    push; ``on_lost()`` once when the connection ends."""

    def __init__(
        self,
        on_push: Callable[[list[Any]], None],
        on_lost: Callable[[], None],
        on_events: Callable[[Sequence[Event]], None] = lambda events: None,
    ) -> None:
        self._on_push = on_push
        self._on_lost = on_lost
        self._on_events = on_events
        self._transport: asyncio.Transport | None = None
        self._frames = Frames()
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._loop = asyncio.get_running_loop()  # asked once: each ask is a getpid() syscall

    @property
    def up(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are no subclass

    def call(self, method: str, *args: Any) -> asyncio.Future[Any]:
        """Send a request; the future gets its answer, or raises what the engine raised. Sent
        at once (``_send``: why), with ``up``, ``frame()`` and ``_send()`` written out: one
        call a publish."""
        transport = self._transport
        if transport is None or transport.is_closing():
            raise BackplaneUnavailable("the engine is not reachable")
        ident = next(self._ids)
        future: asyncio.Future[Any] = self._loop.create_future()
        self._pending[ident] = future
        body = _dumps([ident, method, *args])
        transport.write(_pack(len(body)) + body)
        return future

    def tell(self, method: str, *args: Any) -> None:
        """Send a message that wants no answer (dropped while the link is down: the engine
        that would have read it is gone with what it was about)."""
        if self.up:
            self._send(frame([0, method, *args]))

    def _send(self, data: bytes) -> None:
        # At once: a request waits for its answer, so holding it for the end of the loop pass
        # would add a pass to every publish; a burst costs a write each (small, on a socket).
        assert self._transport is not None
        self._transport.write(data)

    def data_received(self, data: bytes) -> None:
        frames = self._frames
        try:
            if not frames.rest and len(data) >= 4 and _length(data)[0] == len(data) - 4:
                messages = [_loads(memoryview(data)[4:])]  # one answer or push: no feed()
            else:
                messages = frames.feed(data)
        except ValueError:  # orjson's errors are ValueErrors too
            self.close()
            return
        pending = self._pending
        for message in messages:
            ident = message[0]
            if ident == 0:
                if message[1] != "d":
                    self._on_push(message)
                elif len(wire := message[2]) == 1:  # one event: built from C (record)
                    p, c, f, at, tags = wire[0]
                    tags = tuple(tags) if tags else ()
                    self._on_events((record(Event, (p, c, f.encode("latin-1"), at, tags)),))
                else:
                    self._on_events(events_in(wire))
            elif ident > 0:
                future = pending.pop(ident, None)
                if future is not None and not future.done():
                    future.set_result(message[1])
            else:
                future = pending.pop(-ident, None)
                if future is not None and not future.done():
                    future.set_exception(ERRORS.get(message[1], BackplaneUnavailable)(message[2]))

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(BackplaneUnavailable("the link to the engine ended"))
        self._on_lost()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.abort()
