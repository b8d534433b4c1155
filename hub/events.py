"""Events, event ids and the checks on what publishers and subscribers send.

An event id is ``<position>:<channel>``. Positions come from one increasing sequence for the whole
hub (the backplane assigns them), so a single ``Last-Event-ID`` says how far a stream got on every
channel it carries, and the channel part lets a multi-channel subscriber tell channels apart.
Positions are at least the publish time in microseconds since the epoch, so they keep increasing
across a restart of an in-memory hub and an id from before the restart is never mistaken for one
from after it.

Tags (``"tags": {"region": "eu"}`` on a publish) travel inside the stored body, as a first line
``tags: region:eu tier:gold`` that the backplanes store and never look at: no backplane's
publish script, entry layout or message headers changed for them. The line is split off once per
event where a stored entry becomes an ``Event`` (``stored_event``, used by every backplane), so
the frame on the wire is the same with or without tags, and an event without tags pays one
``startswith``. No other body starts so: ``sse.encode`` starts every body with ``event:`` or
``data:``, a Durable Stream's binary frame with a comment (``hub.dialects.durable.codec``).
Tags are kept on the ``Event`` as a tuple of ``name:value`` strings: a tuple of strings is a
record the garbage collector stops tracking (a dict inside the memory backplane's retained
tuples would make each of them tracked, ``hub.backplane.memory_log``), and a filter's test is a
few ``in`` on at most 16 short strings.
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
    "check_tags",
    "encode_draft",
    "event_id",
    "event_name",
    "is_event_name",
    "parse_position",
    "stored_event",
]

CHANNEL_RE = re.compile(r"[A-Za-z0-9_\-.:@/]{1,200}")
EVENT_NAME_RE = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
_POSITION_RE = re.compile(r"[0-9]{1,19}")
#: A tag's name: an event name's characters but ``:``, which parts name and value in a filter.
TAG_NAME_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
#: Tags on one event at most.
MAX_TAGS = 16
#: The first line of a stored body that carries tags (see the module docstring).
TAGS_LINE = b"tags: "

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
    tags: tuple[str, ...] = ()  # "name:value" each (see the module docstring)

    @property
    def id(self) -> str:
        return event_id(self.position, self.channel)


def event_id(position: int, channel: str) -> str:
    return f"{position}:{channel}"


def stored_event(
    position: int, channel: str, body: bytes, published_at: float, ident: str | None = None
) -> Event:
    """A stored entry as an ``Event``: the tags line, if any, split off, the id line put on.
    Every backplane makes its events here, once per event and process. ``ident``: its id
    (``event_id``) when the caller made it already (the memory backplane's receipt)."""
    if ident is None:
        ident = f"{position}:{channel}"
    if body.startswith(TAGS_LINE):
        line, _, body = body.partition(b"\n")
        tags = tuple(line[len(TAGS_LINE) :].decode().split(" "))
        return Event(position, channel, sse.with_id(ident, body), published_at, tags)
    return Event(position, channel, sse.with_id(ident, body), published_at)


def event_name(frame: bytes) -> bytes:
    """The event type of a frame (``message`` when it has no ``event:`` line), with or without
    its id line: a filter's test, made once per event per distinct filter."""
    start = frame.index(b"\n") + 1 if frame.startswith(b"id: ") else 0
    if frame.startswith(b"event: ", start):
        return frame[start + 7 : frame.index(b"\n", start)]
    return b"message"


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
    if not isinstance(name, str) or not is_event_name(name):
        raise InvalidInput(
            f"invalid event name {name!r}: use 1-64 characters of A-Z a-z 0-9 _ . : -"
        )
    return name


@functools.lru_cache(maxsize=1024)  # a publisher sends a few event names over and over
def is_event_name(name: str) -> bool:
    return EVENT_NAME_RE.fullmatch(name) is not None


def check_tags(tags: Any) -> bytes:
    """A publish's ``tags`` object as the first line of the stored body (``b""``: none), or
    ``InvalidInput`` naming the problem."""
    if tags is None:
        return b""
    if not isinstance(tags, dict):
        raise InvalidInput('tags must be a JSON object of names to values: {"region": "eu"}')
    if len(tags) > MAX_TAGS:
        raise InvalidInput(f"{len(tags)} tags; at most {MAX_TAGS}")
    for name, value in tags.items():
        if not TAG_NAME_RE.fullmatch(name):
            raise InvalidInput(
                f"invalid tag name {name!r}: use 1-64 characters of A-Z a-z 0-9 _ . -"
            )
        if not isinstance(value, str) or not EVENT_NAME_RE.fullmatch(value):
            raise InvalidInput(
                f"invalid value of tag {name!r}: {value!r}; use a string of 1-64 characters of "
                "A-Z a-z 0-9 _ . : -"
            )
    if not tags:
        return b""
    return TAGS_LINE + " ".join(f"{name}:{value}" for name, value in tags.items()).encode() + b"\n"


def encode_draft(
    channel: str, event: str, data: Any, max_event_bytes: int, tags: bytes = b""
) -> Draft:
    """Check one event's fields and encode it once; the bytes are reused for every subscriber.
    ``tags``: the tags line (``check_tags``), stored before the body."""
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
    return Draft(channel, tags + (body or sse.encode(event, data)))
