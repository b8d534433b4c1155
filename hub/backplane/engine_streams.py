"""The optional ``Streams`` (Durable Streams, ``hub.backplane.streams``) through the engine.

Each method is one request, run by the engine's memory backplane in one step like every other
(``hub.backplane.engine_server``), so a stream's shape, closure, producers and ``Stream-Seq``
change atomically with its events for the whole hub. What crosses the wire is the dataclasses
as lists (``*_out`` / ``*_in`` below). Every answer carries the channel's marks (deleted,
closed), and the engine pushes them to every worker that follows the channel: a create on a
deleted channel lifts its tombstone, a stream's delete lifts its close, and the workers'
``deleted()`` and ``closed()`` must see that as they see a delete.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from hub.backplane.engine_wire import drafts_in, drafts_out, run_now
from hub.backplane.streams import Appended, Outcome, Producer, Shape, StreamState
from hub.events import Draft

if TYPE_CHECKING:
    from hub.backplane.memory import MemoryBackplane

__all__ = ["StreamsFront", "stream_methods"]


def _shape_out(shape: Shape) -> list[Any]:
    return [shape.content_type, shape.ttl, shape.expires_at]


def _state_out(state: StreamState | None) -> list[Any] | None:
    if state is None:
        return None
    return [_shape_out(state.shape), state.tail, state.closed, state.created_at, state.start]


def _state_in(wire: Sequence[Any] | None) -> StreamState | None:
    if wire is None:
        return None
    shape, tail, closed, created_at, start = wire
    return StreamState(Shape(*shape), tail, closed, created_at, start)


class _Engine(Protocol):
    """What these handlers use of ``hub.backplane.engine_server.EngineServer``."""

    backplane: MemoryBackplane

    def streams_call(self, method: Callable[..., Any], channel: str, *args: Any) -> list[Any]: ...


def stream_methods(engine: _Engine) -> dict[str, Callable[..., Any]]:
    """The engine's handlers of the ``Streams`` requests (each run in one step: ``run_now``)."""
    memory = engine.backplane

    def create(channel: str, shape: list[Any], drafts: list[list[str]], closed: bool) -> Any:
        done = run_now(memory.create_stream(channel, Shape(*shape), drafts_in(drafts), closed))
        return [done[0], _state_out(done[1])]

    def state(channel: str, touch: bool) -> Any:
        return _state_out(run_now(memory.stream_state(channel, touch=touch)))

    def append(channel: str, drafts: list[list[str]], content_type: str | None,
               producer: list[Any] | None, stream_seq: str | None, close: bool) -> Any:  # fmt: skip
        done: Appended = run_now(
            memory.append_stream(
                channel,
                drafts_in(drafts),
                content_type=content_type,
                producer=None if producer is None else Producer(*producer),
                stream_seq=stream_seq,
                close=close,
            )
        )
        return [done.outcome.value, _state_out(done.state), done.ids, done.epoch,
                done.expected_seq, done.last_seq]  # fmt: skip

    def delete(channel: str) -> Any:
        return run_now(memory.delete_stream(channel))

    def wrapped(method: Callable[..., Any]) -> Callable[..., Any]:
        return lambda channel, *args: engine.streams_call(method, channel, *args)

    return {
        "create_stream": wrapped(create),
        "stream_state": wrapped(state),
        "append_stream": wrapped(append),
        "delete_stream": wrapped(delete),
    }


class _Proxy(Protocol):
    def _call(self, method: str, *args: Any) -> Any: ...
    def _set_marks(self, channel: str, deleted: float | None, closed: float | None) -> None: ...


class StreamsFront:
    """Mixin of the engine's proxy: the ``Streams`` methods as requests."""

    async def _stream_call(self: _Proxy, method: str, channel: str, *args: Any) -> Any:
        result, deleted, closed = await self._call(method, channel, *args)
        self._set_marks(channel, deleted, closed)
        return result

    async def create_stream(
        self, channel: str, shape: Shape, drafts: Sequence[Draft], closed: bool
    ) -> tuple[bool, StreamState]:
        created, state = await self._stream_call(  # type: ignore[misc]
            "create_stream", channel, _shape_out(shape), drafts_out(drafts), closed
        )
        found = _state_in(state)
        assert found is not None
        return bool(created), found

    async def stream_state(self, channel: str, *, touch: bool) -> StreamState | None:
        return _state_in(await self._stream_call("stream_state", channel, touch))  # type: ignore[misc]

    async def append_stream(
        self,
        channel: str,
        drafts: Sequence[Draft],
        *,
        content_type: str | None,
        producer: Producer | None,
        stream_seq: str | None,
        close: bool,
    ) -> Appended:
        wire_producer = None if producer is None else [producer.id, producer.epoch, producer.seq]
        outcome, state, ids, epoch, expected, last = await self._stream_call(  # type: ignore[misc]
            "append_stream", channel, drafts_out(drafts), content_type, wire_producer,
            stream_seq, close,
        )  # fmt: skip
        return Appended(Outcome(outcome), _state_in(state), ids, epoch, expected, last)

    async def delete_stream(self, channel: str) -> bool:
        return bool(await self._stream_call("delete_stream", channel))  # type: ignore[misc]
