"""Events, event ids and the checks on what publishers and subscribers send.

An event id is ``<position>:<channel>``. Positions come from one increasing sequence for the whole
hub (the backplane assigns them), so a single ``Last-Event-ID`` says how far a stream got on every
channel it carries, and the channel part lets a multi-channel subscriber tell channels apart.
Positions are at least the publish time in microseconds since the epoch, so they keep increasing
across a restart of an in-memory hub and an id from before the restart is never mistaken for one
from after it.
"""

from __future__ import annotations

import functools
import re
from typing import Any, NamedTuple

import orjson

from hub import sse

__all__ = [
    "MAX_DATA_DEPTH",
    "MAX_LAST_EVENT_ID",
    "Draft",
    "Event",
    "InvalidInput",
    "check_channel",
    "check_event_name",
    "encode_draft",
    "event_id",
    "parse_position",
]

CHANNEL_RE = re.compile(r"[A-Za-z0-9_\-.:@/]{1,200}")
EVENT_NAME_RE = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
_POSITION_RE = re.compile(r"[0-9]{1,19}")

#: Longest ``Last-Event-ID`` looked at; longer values are treated as unknown, not parsed.
MAX_LAST_EVENT_ID = 512
#: Deepest nesting of ``data`` the encoder (orjson) writes; the JSON parser reads deeper.
MAX_DATA_DEPTH = 254


class InvalidInput(ValueError):
    """Bad input from a client; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Draft(NamedTuple):
    """An event accepted for publishing, encoded but without a position yet."""

    channel: str
    body: bytes  # the frame without its id line (sse.encode)


class Event(NamedTuple):
    """A published event: its position, and the complete frame every subscriber receives.

    A NamedTuple, not a dataclass: one is made per event on the publish path, and a tuple is
    the cheapest immutable record Python builds.
    """

    position: int
    channel: str
    frame: bytes
    published_at: float  # time.time() when the backplane stored it

    @property
    def id(self) -> str:
        return event_id(self.position, self.channel)


def event_id(position: int, channel: str) -> str:
    return f"{position}:{channel}"


def parse_position(last_event_id: str) -> int | None:
    """The position in a client-sent id, or None when it is not one of ours (untrusted input)."""
    if len(last_event_id) > MAX_LAST_EVENT_ID:
        return None
    head = last_event_id.split(":", 1)[0].strip()
    if not _POSITION_RE.fullmatch(head):
        return None
    return int(head)


@functools.lru_cache(maxsize=4096)  # a publisher names the same channels again and again
def check_channel(name: str) -> str:
    """The name, or ``InvalidInput``. Cached: a hit costs a fifth of the regex; a refusal raises
    and is never cached, so names an attacker makes up hold no more than the cache's bound."""
    if not CHANNEL_RE.fullmatch(name):
        shown = name if len(name) <= 60 else name[:60] + "..."
        raise InvalidInput(
            f"invalid channel name {shown!r}: use 1-200 characters of A-Z a-z 0-9 _ - . : @ /"
        )
    return name


def check_event_name(name: Any) -> str:
    if not isinstance(name, str) or not EVENT_NAME_RE.fullmatch(name):
        raise InvalidInput(
            f"invalid event name {name!r}: use 1-64 characters of A-Z a-z 0-9 _ . : -"
        )
    return name


def encode_draft(channel: str, event: str, data: Any, max_event_bytes: int) -> Draft:
    """Check one event's fields and encode it once; the bytes are reused for every subscriber."""
    if isinstance(data, str):
        size = len(data.encode())
        body = b""
    else:
        # orjson escapes line breaks, so JSON is one data line: no text round trip needed
        try:
            encoded = orjson.dumps(data)
        except orjson.JSONEncodeError:  # the only thing parsed JSON can fail on: its depth
            raise InvalidInput(
                f"event data is nested too deeply: at most {MAX_DATA_DEPTH} levels of arrays "
                "and objects"
            ) from None
        size = len(encoded)
        body = sse.encode_line(event, encoded)
    if size > max_event_bytes:
        raise InvalidInput(
            f"event data is {size} bytes encoded; the limit (max_event_bytes) is {max_event_bytes}",
            status=413,
        )
    return Draft(channel, body or sse.encode(event, data))
