"""The Server-Sent Events wire format, as pure functions.

Everything that becomes bytes on an event stream is built here, once per event, so the fan-out
only moves ready-made bytes. The rules that bite (WHATWG HTML, "Server-sent events"):

- lines end with CR, LF or CRLF, and only those: payloads are split with ``_LINE_BREAK``, never
  ``str.splitlines()``, which also splits on U+2028, U+0085, VT, FF and others;
- ``data: `` is written with one space, because a client strips exactly one leading space, so a
  payload that starts with a space survives only that way;
- ``id`` and ``event`` must not contain CR, LF or NUL: callers validate them (see ``events``), and
  ``encode`` refuses them again so a bug cannot turn into frame injection.
"""

from __future__ import annotations

import re

__all__ = [
    "CLOSE_EVENT",
    "HEARTBEAT",
    "close_frame",
    "comment",
    "encode",
    "encode_line",
    "http_chunk",
    "retry",
    "with_id",
]

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _breaks_field(text: str) -> bool:
    """A CR, LF or NUL would end the field (or the frame) early. Three substring tests, not a
    regex: this runs once per event stored."""
    return "\n" in text or "\r" in text or "\0" in text


#: The event type a client assumes when a frame has no ``event:`` line.
DEFAULT_EVENT = "message"


def encode(event: str, data: str) -> bytes:
    """Encode an event without its ``id:`` line: ``event:`` (unless default) and ``data:`` lines.

    The id is added by ``with_id`` once the backplane has assigned the position, so the body can
    be encoded before publishing and stored as it is.
    """
    if _breaks_field(event):
        raise ValueError("event must not contain CR, LF or NUL")
    head = "" if event == DEFAULT_EVENT else f"event: {event}\n"
    lines = "".join(f"data: {line}\n" for line in _LINE_BREAK.split(data))
    return f"{head}{lines}\n".encode()


def encode_line(event: str, data: bytes) -> bytes:
    """``encode`` for data known to be one line of UTF-8 (compact JSON): no splitting needed.

    ``find``, not ``in``: ``bytes in bytes`` first tries the needle as an int and raises and
    clears a TypeError inside, twice per publish (a sixtieth of a single publish's CPU)."""
    if data.find(b"\n") >= 0 or data.find(b"\r") >= 0:
        return encode(event, data.decode())
    if event == DEFAULT_EVENT:
        return b"data: " + data + b"\n\n"
    if "\n" in event or "\r" in event or "\0" in event:  # _breaks_field, inlined
        raise ValueError("event must not contain CR, LF or NUL")
    return b"".join((b"event: ", event.encode(), b"\ndata: ", data, b"\n\n"))


def with_id(event_id: str, body: bytes) -> bytes:
    """Prefix an encoded body with its ``id:`` line: the frame every subscriber receives."""
    if "\n" in event_id or "\r" in event_id or "\0" in event_id:  # _breaks_field, inlined
        raise ValueError("id must not contain CR, LF or NUL")
    return b"".join((b"id: ", event_id.encode(), b"\n", body))


def comment(text: str = "") -> bytes:
    """A comment frame: keeps proxies from timing out an idle stream; fires no client event."""
    parts = _LINE_BREAK.split(text)
    return "".join(f": {part}\n" if part else ":\n" for part in parts).encode() + b"\n"


def retry(milliseconds: int) -> bytes:
    """The reconnection-delay hint. ASCII digits only: a client ignores ``retry: 5s``."""
    if milliseconds < 0:
        raise ValueError("retry must not be negative")
    return b"retry: %d\n\n" % milliseconds


def http_chunk(data: bytes) -> bytes:
    """Frame bytes as one HTTP/1.1 chunk, for streams written straight to the transport."""
    return b"%x\r\n%b\r\n" % (len(data), data)


#: The last frame of a deleted channel on every stream that carried it.
CLOSE_EVENT = "close"


def close_frame(channel: str) -> bytes:
    """``event: close`` naming the channel; no id, so a client's Last-Event-ID stays put.
    (A channel name has no character JSON would escape or a line break.)"""
    return encode_line(CLOSE_EVENT, b'{"channel":"' + channel.encode() + b'"}')


#: Sent to every open stream every ``heartbeat`` seconds.
HEARTBEAT = comment()
