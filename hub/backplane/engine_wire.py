"""The engine's wire: length-prefixed orjson frames over a Unix socket, and what they carry.

One format for both ends (``engine_server``, ``engine_client``). A frame is a 4-byte big-endian
length and an orjson array:

- a request ``[id, method, *args]`` (``id`` > 0), answered by ``[id, result]`` or
  ``[-id, kind, message]`` (an error the proxy raises again: ``ERRORS``); requests are
  pipelined and answered in the order they came;
- a message that wants no answer ``[0, method, *args]`` (``unfollow``);
- a push from the engine ``[0, kind, ...]``: ``d`` (events), ``x`` (deleted), ``c`` (closed),
  ``l`` (lost).

Frames and draft bodies are bytes, which JSON has no type for: they travel as latin-1 text
(every byte one code point, so any bytes go and come back as they were; orjson writes the
ASCII of an SSE frame as it is, so the common frame costs a copy, not an escape).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

import orjson

from hub.backplane import (
    BackplaneFull,
    BackplaneUnavailable,
    ChannelClosed,
    ChannelDeleted,
)
from hub.events import Draft, Event

__all__ = [
    "ERRORS",
    "HEADER",
    "Frames",
    "drafts_in",
    "drafts_out",
    "error_of",
    "events_frame",
    "events_in",
    "events_out",
    "frame",
    "marks_out",
    "pushes",
    "record",
    "run_now",
    "socket_path",
]

HEADER = struct.Struct(">I")
#: A frame longer than this is a broken peer, not a message (a publish is at most
#: max_body_bytes, a history page about REPLAY_SLICE; both far below).
MAX_FRAME = 1 << 30

_dumps = orjson.dumps
_loads = orjson.loads
_pack = HEADER.pack
_unpack_from = HEADER.unpack_from
#: ``tuple.__new__``: a NamedTuple made from C, not through its generated ``__new__`` (a Python
#: call, ~1,500 instructions, once per event on both ends of the wire).
record = tuple.__new__


def frame(message: Any) -> bytes:
    """One frame: its length, then the message as orjson."""
    body = _dumps(message)
    return _pack(len(body)) + body


class Frames:
    """Cuts a byte stream into messages; keeps at most one unfinished frame."""

    __slots__ = ("rest",)

    def __init__(self) -> None:
        self.rest = b""  # the start of an unfinished frame

    def feed(self, data: bytes) -> list[Any]:
        """The messages complete with ``data``; raises ``ValueError`` for a broken peer. (The
        common read, one whole frame and no rest, both ends parse without this call.)"""
        buffer = self.rest + data if self.rest else data
        end = len(buffer)
        messages = []
        start = 0
        while end - start >= 4:
            (size,) = _unpack_from(buffer, start)
            if size > MAX_FRAME:
                raise ValueError(f"a frame of {size} bytes: the peer is broken")
            if end - start - 4 < size:
                break
            messages.append(_loads(memoryview(buffer)[start + 4 : start + 4 + size]))
            start += 4 + size
        self.rest = buffer[start:] if start < end else b""
        return messages


#: A mark that never ends (a Durable Stream's close lasts as long as the stream) as a number
#: JSON can carry (orjson writes infinity as null, which means "no mark" here).
FOREVER = 1e300


def marks_out(
    channel: str, deleted: dict[str, float], closed: dict[str, float]
) -> list[float | None]:
    """A channel's marks on the wire: until when it stands deleted, and closed (None: not)."""
    return [
        None if (d := deleted.get(channel)) is None else min(d, FOREVER),
        None if (c := closed.get(channel)) is None else min(c, FOREVER),
    ]


_L = TypeVar("_L")


def pushes(events: Sequence[Event], followers: dict[str, set[_L]]) -> list[tuple[_L, bytes]]:
    """The frames of a batch of events for each link that follows some of their channels:
    each link gets its events in one frame, and one encoding serves every link that gets the
    same selection (usually all of them)."""
    by_link: dict[_L, list[Event]] = {}
    for event in events:
        for link in followers.get(event.channel, ()):
            by_link.setdefault(link, []).append(event)
    encoded: dict[tuple[int, ...], bytes] = {}
    out = []
    for link, chosen in by_link.items():
        key = tuple(event.position for event in chosen)
        found = encoded.get(key)
        if found is None:
            found = encoded[key] = events_frame(chosen)
        out.append((link, found))
    return out


def events_frame(events: Sequence[Event]) -> bytes:
    """The push of ``events`` (``[0, "d", events]``) as one frame: ``frame(events_out())``,
    with one event (the common push) written out, one call where there were three."""
    if len(events) == 1:
        p, c, f, at, tags = events[0]
        body = _dumps([0, "d", [[p, c, f.decode("latin-1"), at, tags]]])
    else:
        body = _dumps([0, "d", events_out(events)])
    return _pack(len(body)) + body


def socket_path(path: str) -> str:
    """``@name`` (what an environment variable can carry) is ``\0name`` in Linux's abstract
    namespace; any other path is a file."""
    return "\0" + path[1:] if path.startswith("@") else path


def drafts_out(drafts: Sequence[Draft]) -> list[list[str]]:
    return [[d.channel, d.body.decode("latin-1")] for d in drafts]


def drafts_in(wire: Sequence[Sequence[str]]) -> list[Draft]:
    if len(wire) == 1:  # the common publish: no list comprehension (a call of its own)
        channel, body = wire[0]
        return [record(Draft, (channel, body.encode("latin-1")))]
    return [record(Draft, (channel, body.encode("latin-1"))) for channel, body in wire]


def events_out(events: Sequence[Event]) -> list[list[Any]]:
    return [[p, c, f.decode("latin-1"), at, tags] for p, c, f, at, tags in events]


def events_in(wire: Sequence[Sequence[Any]]) -> list[Event]:
    return [
        record(Event, (p, c, f.encode("latin-1"), at, tuple(tags) if tags else ()))
        for p, c, f, at, tags in wire
    ]


#: The errors that cross the wire, by kind: how the proxy raises each again.
ERRORS: dict[str, Callable[[str], Exception]] = {
    "unavailable": BackplaneUnavailable,
    "full": BackplaneFull,
    "deleted": ChannelDeleted,
    "closed": ChannelClosed,
}


def error_of(problem: Exception) -> tuple[str, str]:
    """An error raised by the engine's backplane as (kind, what it carries)."""
    if isinstance(problem, ChannelClosed):
        return "closed", problem.channel
    if isinstance(problem, ChannelDeleted):
        return "deleted", problem.channel
    if isinstance(problem, BackplaneFull):
        return "full", str(problem)
    return "unavailable", f"the engine failed: {type(problem).__name__}: {problem}"


def run_now(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run a memory backplane method to its end at once: none of them awaits (their module's
    docstring says why), which is what keeps each request one step, in arrival order."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("a memory backplane method awaited: the engine runs them in one step")
