"""Durable Streams' live wire as ``hub.view.Format``s: SSE ``data``/``control`` pairs, and the
long-poll's wake-up.

SSE (the protocol's section 5.8): each event is an ``event: data`` frame (a JSON stream's
message as a one-element array; a text stream's text as ``data:`` lines; anything else base64)
followed by its ``event: control`` frame: ``streamNextOffset`` (the event's offset),
``streamCursor`` and, when the event is the newest its channel is known to have,
``upToDate``. A channel's close (or deletion) is a last control frame with ``streamClosed``.
There is one view per kind of stream (JSON, text, base64), made at wiring, so each event is
encoded once per kind that reads its channel live, never per reader.

"The newest its channel is known to have" is ``Tails``: the route records the stream's tail
when an SSE read begins, and each encoded event raises it. So the last event of a catch-up
carries ``upToDate`` and the ones before it do not (each data frame still has its control, as
the suite checks), and a live event, newer than anything before, always does. The close frame
takes its ``streamNextOffset`` from the same record.

Long-poll (section 5.7) uses the core only to wait: its view encodes every event and every
close as one constant byte, so a waiting request learns "something happened" from the core's
fan-out at the cost of one shared bytes object per event, and then reads the stream as a
catch-up read does (``hub.dialects.durable.live``).
"""

from __future__ import annotations

import base64
import re

import orjson

from hub import sse
from hub.backplane import Reset
from hub.dialects.durable.codec import Kind, payload
from hub.dialects.durable.offsets import Cursors, format_offset
from hub.events import Event
from hub.view import View

__all__ = ["WAKE", "LongPollFormat", "SseFormat", "Tails", "Wire", "control"]

#: What the long-poll view writes for an event or a close: one byte, the same object each time.
WAKE = b"!"
#: Channels whose tail ``Tails`` remembers at most (the oldest forgotten first).
MAX_TAILS = 100_000
_LINE_BREAK = re.compile(rb"\r\n|\r|\n")


class Tails:
    """The newest position known of each channel read over SSE (see the module docstring)."""

    def __init__(self, bound: int = MAX_TAILS) -> None:
        self._known: dict[str, int] = {}
        self._bound = bound

    def get(self, channel: str) -> int | None:
        return self._known.get(channel)

    def saw(self, channel: str, position: int) -> bool:
        """Record ``position``; whether it is the newest known (at or past the record)."""
        known = self._known.get(channel)
        if known is not None and position < known:
            return False
        if known is None and len(self._known) >= self._bound:
            del self._known[next(iter(self._known))]
        self._known[channel] = position
        return True


def control(
    offset: str | None, cursor: int | None, up_to_date: bool, closed: bool = False
) -> bytes:
    """One ``event: control`` frame (``data:`` without a space, as the suite's parsers want)."""
    fields: dict[str, object] = {} if offset is None else {"streamNextOffset": offset}
    if closed:
        fields["streamClosed"] = True  # no cursor: a client must not reconnect
    elif cursor is not None:
        fields["streamCursor"] = str(cursor)
    if up_to_date or closed:
        fields["upToDate"] = True
    return b"event: control\ndata:" + orjson.dumps(fields) + b"\n\n"


def _data_lines(text: bytes) -> bytes:
    """``data:`` lines of text, one per line; a line that starts with a space gets the one
    space a client strips, so that its own survives."""
    out = []
    for line in _LINE_BREAK.split(text):
        out.append(b"data: " + line if line[:1] == b" " else b"data:" + line)
    return b"\n".join(out) + b"\n"


class SseFormat:
    """One kind of stream's SSE frames (``event`` runs once per event per view)."""

    __slots__ = ("_cursors", "_kind", "_tails")
    native = False
    heartbeat = sse.HEARTBEAT

    def __init__(self, kind: Kind, tails: Tails, cursors: Cursors) -> None:
        self._kind = kind
        self._tails = tails
        self._cursors = cursors

    def event(self, event: Event) -> bytes:
        data = self.data(payload(event, self._kind))
        newest = self._tails.saw(event.channel, event.position)
        offset = format_offset(event.position)
        return data + control(offset, self._cursors.current(), newest)

    def data(self, message: bytes) -> bytes:
        if self._kind is Kind.JSON:
            return b"event: data\n" + _data_lines(b"[" + message + b"]") + b"\n"
        if self._kind is Kind.TEXT:
            text = message.decode(errors="replace").encode()
            return b"event: data\n" + _data_lines(text) + b"\n"
        return b"event: data\ndata:" + base64.b64encode(message) + b"\n\n"

    def tick(self, frame: bytes) -> bytes:
        return b""  # (clock channels are refused by the routes)

    def head(self, retry_ms: int) -> bytes:
        return b""  # (the route writes the first control frame when the reader is at the tail)

    def reset(self, reset: Reset) -> bytes:
        return b""  # (a read from -1 of a trimmed history starts at the oldest event kept)

    def close(self, channel: str) -> bytes:
        tail = self._tails.get(channel)  # (known: the route recorded it; None if forgotten)
        return control(None if tail is None else format_offset(tail), None, True, closed=True)


class LongPollFormat:
    """Every event and close is ``WAKE``; nothing else is written (no heartbeat either)."""

    __slots__ = ()
    native = False
    heartbeat = b""

    def event(self, event: Event) -> bytes:
        return WAKE

    def tick(self, frame: bytes) -> bytes:
        return b""

    def head(self, retry_ms: int) -> bytes:
        return b""

    def reset(self, reset: Reset) -> bytes:
        return b""

    def close(self, channel: str) -> bytes:
        return WAKE


class Wire:
    """The dialect's views, made once at wiring, and what they share."""

    def __init__(self) -> None:
        self.tails = Tails()
        self.cursors = Cursors()
        self.sse = {kind: View(SseFormat(kind, self.tails, self.cursors)) for kind in Kind}
        self.long_poll = View(LongPollFormat())
