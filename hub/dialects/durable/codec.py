"""A Durable Stream's payloads as channel events, and back: the frame is the storage.

An append becomes the frames a native ``EventSource`` on ``/channels/<name>/events`` sees, so
the channel's history *is* the stream and nothing is stored twice:

- ``application/json`` (any case, parameters ignored): one event per message (an array body is
  flattened one level), ``data: <compact JSON>``;
- ``text/*``: the text as ``data:`` lines, when it is UTF-8 without CR (a CR would come back as
  a line break, so it could not be read back byte for byte);
- anything else (binary types, or text that is not so): a comment line ``: base64`` (the marker
  that makes the frame unambiguous), then ``data: <base64>``.

Read back (``payload``): the marker: the base64 decoded; a JSON stream: the data text when it
parses as JSON, else the data as a JSON string (an event published through the hub's own API
with string data); text and binary streams: the data text's UTF-8 bytes. So an event published
with the hub's own API reads as a message of any stream on its channel.

A text or binary append larger than one event may be (``max_event_bytes``, measured as the
data's encoded size) is split into several events: the stream is bytes, and its reads join
them. Text is split on a character boundary, so each part stays text for an EventSource. A JSON
message is never split: one larger than ``max_event_bytes`` is refused (413).
"""

from __future__ import annotations

import base64
import binascii
import enum
from collections.abc import Iterable

import orjson

from hub import sse
from hub.events import MAX_DATA_DEPTH, Draft, Event, InvalidInput

__all__ = ["BASE64_MARK", "Kind", "drafts_of", "join", "kind_of", "payload"]

#: The comment line that marks a base64 frame.
BASE64_MARK = b": base64\n"
_MARK = BASE64_MARK.rstrip(b"\n")


class Kind(enum.Enum):
    """How a stream's bytes are framed, from its content type."""

    JSON = "json"
    TEXT = "text"
    BINARY = "binary"


def kind_of(media_type: str) -> Kind:
    """``media_type``: lower case, without parameters (``hub.backplane.streams.media_type``)."""
    if media_type == "application/json":
        return Kind.JSON
    return Kind.TEXT if media_type.startswith("text/") else Kind.BINARY


def drafts_of(
    channel: str, kind: Kind, body: bytes, max_event_bytes: int, *, create: bool
) -> list[Draft]:
    """The events of one append (or a create's initial body; an empty JSON array is allowed
    only there). Raises ``InvalidInput``: 400 for JSON that is not, 413 past the limits."""
    if kind is Kind.JSON:
        messages = _json_messages(body, max_event_bytes, create)
        return [Draft(channel, sse.encode_line("message", m)) for m in messages]
    if not body:
        return []
    drafts = []
    size = max(4, max_event_bytes // 4 * 3)  # base64 of that fits max_event_bytes
    start = 0
    while start < len(body):
        end = min(len(body), start + size)
        if kind is Kind.TEXT and end < len(body):
            end = _char_boundary(body, start, end)
        drafts.append(Draft(channel, _frame_body(body[start:end], kind)))
        start = end
    return drafts


def _char_boundary(body: bytes, start: int, end: int) -> int:
    """Move ``end`` back off UTF-8 continuation bytes (at most 3), so a split keeps text."""
    for cut in range(end, max(start + 1, end - 3) - 1, -1):
        if body[cut] & 0xC0 != 0x80:
            return cut
    return end


def _frame_body(chunk: bytes, kind: Kind) -> bytes:
    if kind is Kind.TEXT and b"\r" not in chunk:
        try:
            return sse.encode("message", chunk.decode())
        except UnicodeDecodeError:
            pass
    return BASE64_MARK + b"data: " + base64.b64encode(chunk) + b"\n\n"


def _json_messages(body: bytes, max_event_bytes: int, create: bool) -> list[bytes]:
    if not body.strip():
        if create:
            return []
        raise InvalidInput("the body is empty: send JSON, or Stream-Closed: true to close")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as problem:
        raise InvalidInput(f"the body is not valid JSON: {problem}") from None
    items = value if isinstance(value, list) else [value]
    if not items and not create:
        raise InvalidInput("an empty JSON array appends nothing: send at least one message")
    messages = []
    for item in items:
        try:
            encoded = orjson.dumps(item)
        except orjson.JSONEncodeError:
            raise InvalidInput(
                f"a message is nested too deeply: at most {MAX_DATA_DEPTH} levels"
            ) from None
        if len(encoded) > max_event_bytes:
            raise InvalidInput(
                f"a message is {len(encoded)} bytes encoded; the limit (max_event_bytes) is "
                f"{max_event_bytes}",
                413,
            )
        messages.append(encoded)
    return messages


def payload(event: Event, kind: Kind) -> bytes:
    """One event's payload in a stream of ``kind``: a JSON message's text (JSON streams), else
    the bytes it appended."""
    based, data = _data_of(event.frame)
    if based:
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raw = data  # not ours after all: the text as it stands
        if kind is not Kind.JSON:
            return raw
        data = raw
    if kind is not Kind.JSON:
        return data
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError:
        return orjson.dumps(data.decode(errors="replace"))
    return data


def _data_of(frame: bytes) -> tuple[bool, bytes]:
    """Whether the frame has the base64 mark, and its data (``data:`` lines joined by LF)."""
    based = False
    lines = []
    for line in frame.split(b"\n"):
        if line.startswith(b"data:"):
            value = line[5:]
            lines.append(value[1:] if value[:1] == b" " else value)
        elif line == _MARK:
            based = True
    return based, b"\n".join(lines)


def join(payloads: Iterable[bytes], kind: Kind) -> bytes:
    """A read's body: a JSON array of the messages (JSON streams), else the bytes joined."""
    if kind is Kind.JSON:
        return b"[" + b",".join(payloads) + b"]"
    return b"".join(payloads)
