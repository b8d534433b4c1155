"""NATS backplane: subjects of channels, the JetStream API calls, messages as events, health.

Shared by every module of the NATS backplane, so each names subjects, calls the API and tells an
outage the same way.

Channel names allow ``A-Z a-z 0-9 _ - . : @ /``; in a NATS subject ``.`` separates tokens, and
the others are best kept out of tokens too. A channel becomes one subject token reversibly, with
``_`` as the escape character: ``_`` -> ``__``, ``.`` -> ``_d``, ``:`` -> ``_c``, ``@`` -> ``_a``,
``/`` -> ``_s`` (``news.eu/fr`` -> ``news_deu_sfr``). Every other allowed character is itself.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from datetime import datetime
from typing import Any

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError

from hub.backplane.link import Link
from hub.backplane.nats_stream_record import decode
from hub.backplane.tombstones import Tombstones
from hub.events import Event, stored_event

__all__ = [
    "CLOSED",
    "CREATED",
    "GONE",
    "MIN_VERSION",
    "NEWEST",
    "PREV",
    "UNAVAILABLE",
    "ApiError",
    "Link",
    "Subjects",
    "api",
    "is_closing",
    "is_created",
    "is_floor",
    "is_marker",
    "is_tombstone",
    "last_markers",
    "mark_ends",
    "message_event",
    "new_link",
    "prev_of",
    "stamp",
]

log = logging.getLogger("hub.backplane")

#: Atomic batch publishes (2.12) and batched direct gets (2.11) are what the guarantees rest on.
MIN_VERSION = (2, 12)
#: The header naming the previous message of the same channel (see ``hub.backplane.nats``).
PREV = "Ssehub-Prev"
#: The header of a deleted channel's tombstone message (``hub.backplane.nats_private``).
GONE = "Ssehub-Deleted"
#: The header of a closed channel's close marker (``hub.backplane.nats_private``).
CLOSED = "Ssehub-Closed"
#: The header of a Durable Stream's create marker (``hub.backplane.nats_streams``).
CREATED = "Ssehub-Created"
#: On a close marker: the sequence of the channel's newest event before it ("0": none), so the
#: channel list names it without a read per closed channel (``hub.backplane.nats_history``).
#: Markers written without it (a close that raced a publish, a Durable Stream's) are read.
NEWEST = "Ssehub-Newest"
#: Seconds a JetStream API call or publish may take before it counts as NATS being away.
API_TIMEOUT = 3.0

_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,128}")
_ESCAPES = {"_": "__", ".": "_d", ":": "_c", "@": "_a", "/": "_s"}
_UNESCAPES = {value[1]: key for key, value in _ESCAPES.items()}


class ApiError(Exception):
    """JetStream answered a request with an error (``code`` is its ``err_code``)."""

    def __init__(self, code: int, description: str) -> None:
        super().__init__(f"{description} (err_code {code})")
        self.code = code
        self.description = description


#: What a NATS that is away, or answers with an error, raises: none may escape to the hub.
UNAVAILABLE: tuple[type[BaseException], ...] = (NatsError, OSError, TimeoutError, ApiError)


class Subjects:
    """Subjects under one ``nats_subject_prefix``: ``P.<token>`` per channel (its events, or
    its markers), ``P_idem.<hex>`` per idempotency record, ``P_ticket.<digest>`` per one-time
    ticket, ``P_dstream.<token>`` per Durable Stream's state record (``nats_streams``),
    ``P_counts`` for the processes' subscriber counts (core NATS)."""

    __slots__ = ("counts", "idem", "prefix", "states", "tickets")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.idem = f"{prefix}_idem"
        self.tickets = f"{prefix}_ticket"
        self.states = f"{prefix}_dstream"
        self.counts = f"{prefix}_counts"

    def of(self, channel: str) -> str:
        return f"{self.prefix}.{_token(channel)}"

    def state(self, channel: str) -> str:
        """The subject of the state record of the Durable Stream on ``channel``."""
        return f"{self.states}.{_token(channel)}"

    def channel(self, subject: str) -> str | None:
        head, _, token = subject.rpartition(".")
        if head != self.prefix:
            return None
        out: list[str] = []
        escaped = False
        for char in token:
            if escaped:
                out.append(_UNESCAPES.get(char, char))
                escaped = False
            elif char == "_":
                escaped = True
            else:
                out.append(char)
        return "".join(out)

    def record(self, key: str) -> str:
        return f"{self.idem}.{key.encode().hex()}"

    def ticket(self, digest: str) -> str:
        """The digest as a subject token as it is (``hub.grants`` gives hex), or its hex."""
        token = digest if _TOKEN.fullmatch(digest) else digest.encode().hex()
        return f"{self.tickets}.{token}"

    def streams(self) -> list[str]:
        return [f"{self.prefix}.*", f"{self.idem}.*", f"{self.tickets}.*", f"{self.states}.*"]


def _token(channel: str) -> str:
    return "".join(_ESCAPES.get(c, c) for c in channel)


async def api(nc: Client, subject: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One JetStream API request; an error answer raises ``ApiError``."""
    payload = orjson.dumps(body) if body is not None else b""
    reply = await nc.request(subject, payload, timeout=API_TIMEOUT)
    answer: dict[str, Any] = orjson.loads(reply.data) if reply.data else {}
    error = answer.get("error")
    if error:
        raise ApiError(int(error.get("err_code", 0)), str(error.get("description", "")))
    return answer


def stamp(text: str) -> float:
    """An RFC 3339 time with nanoseconds (NATS) as seconds since the epoch."""
    main, _, fraction = text.rstrip("Z").partition(".")
    seconds = datetime.fromisoformat(main + "+00:00").timestamp()
    return seconds + (float("0." + fraction) if fraction else 0.0)


def prev_of(headers: dict[str, str] | None, seq: int) -> int:
    """The sequence of the channel's message before this one (0: none), or the highest sequence
    that may have been one of its messages (``~N``: the channel held nothing, N is the age
    floor); ``-d`` means d places before this message."""
    text = (headers or {}).get(PREV, "0").lstrip("~")
    number = int(text)
    return seq + number if number < 0 else number


def is_floor(headers: dict[str, str] | None) -> bool:
    """Whether the previous-message header is an age floor, not a message."""
    return (headers or {}).get(PREV, "").startswith("~")


def is_closing(headers: dict[str, str] | None) -> bool:
    """Whether a channel's message is its close marker (it was closed), not an event."""
    return CLOSED in (headers or {})


def is_created(headers: dict[str, str] | None) -> bool:
    """Whether a channel's message is a Durable Stream's create marker, not an event."""
    return CREATED in (headers or {})


def is_marker(headers: dict[str, str] | None) -> bool:
    """Whether a channel's message is a tombstone, a close or a create marker: no event."""
    found = headers or {}
    return GONE in found or CLOSED in found or CREATED in found


def is_tombstone(headers: dict[str, str] | None) -> bool:
    """Whether a channel's message is its tombstone (it was deleted), not an event."""
    return GONE in (headers or {})


def message_event(channel: str, position: int, body: bytes, stored: float) -> Event:
    return stored_event(position, channel, body, stored)


async def batch_get(nc: Client, stream: str, request: dict[str, Any]) -> list[Msg]:
    """A batched direct get: the messages, up to the end-of-batch (or no-messages) status."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    try:
        await nc.publish(f"$JS.API.DIRECT.GET.{stream}", orjson.dumps(request), reply=inbox)
        found: list[Msg] = []
        async with asyncio.timeout(API_TIMEOUT):
            while True:
                msg = await sub.next_msg(timeout=API_TIMEOUT)
                status = (msg.headers or {}).get("Status")
                if status is not None:
                    if status not in ("204", "404"):
                        raise ApiError(int(status), f"direct get answered status {status}")
                    return found
                found.append(msg)
    finally:
        await sub.unsubscribe()


async def last_markers(
    nc: Client, stream: str, subjects: Subjects, channels: list[str]
) -> list[tuple[str, str, float]]:
    """What the last message of each of ``channels`` that has one says: ``(channel, kind,
    stored)``, kind ``deleted`` (its tombstone), ``closed`` (its close marker; or, when the
    markers expired with ``history_ttl``, a closed Durable Stream's record, stored now) or ``""``
    (an event or a stream's create marker: the channel lives). 50 channels a request."""
    chunks = [channels[at : at + 50] for at in range(0, len(channels), 50)]
    requests = [
        {"multi_last": [subjects.of(c) for c in chunk] + [subjects.state(c) for c in chunk]}
        for chunk in chunks
    ]
    replies = await asyncio.gather(*(batch_get(nc, stream, r) for r in requests))
    states = {subjects.state(c): c for c in channels}
    found: dict[str, tuple[str, str, float]] = {}
    closed_streams: list[str] = []
    for msg in (msg for reply in replies for msg in reply):
        headers = msg.headers or {}
        subject = headers.get("Nats-Subject", "")
        if subject in states:
            record = decode(msg.data, int(headers["Nats-Sequence"]))
            if record is not None and record.closed and not record.gone:
                closed_streams.append(states[subject])
            continue
        channel = subjects.channel(subject)
        if channel is not None:
            kind = "deleted" if is_tombstone(headers) else "closed" if is_closing(headers) else ""
            found[channel] = (channel, kind, stamp(headers["Nats-Time-Stamp"]))
    now = time.time()
    for channel in closed_streams:
        found.setdefault(channel, (channel, "closed", now))
    return list(found.values())


def mark_ends(
    found: list[tuple[str, str, float]], tombstones: Tombstones, closings: Tombstones
) -> None:
    """``last_markers``' answer into a process's marks; one that is not the channel's last
    message any more (of a life before a Durable Stream's (re)creation) is lifted."""
    for channel, kind, stored in found:
        if kind == "deleted":
            tombstones.mark(channel, stored)
            continue
        tombstones.lift(channel)
        if kind == "closed":
            closings.mark(channel, stored)
        else:
            closings.lift(channel)


def new_link() -> Link:
    """Witnesses as in the Redis backplane: ``requests`` (API calls, publishes) and ``reader``."""
    return Link("nats", "NATS", ApiError)
