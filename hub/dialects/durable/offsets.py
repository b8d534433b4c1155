"""Offsets, cursors and the protocol's request headers: the small parsers of untrusted input.

- An offset is the channel position as ``%020d``: opaque to clients, lexicographically
  sortable (20 digits hold any position), and a read "from offset X" is the history after
  position X. ``-1`` is the stream's start, ``now`` its tail; anything else malformed is 400.
- A cursor (``Stream-Cursor``, ``streamCursor``) is the number of 20-second intervals since
  2024-10-09 (the protocol's section 10.1), never below one this process has answered
  before: a client that echoes a cursor at or past the current interval moves the process's
  floor one interval past it, so its next response (and every later one) is greater. A floor
  for the process, not per reader, because an SSE event's control frame is encoded once for
  every reader of it; one interval is within the protocol's 1-3600 s of jitter.
- ``Stream-TTL``, ``Stream-Expires-At``, ``Stream-Closed``, ``Stream-Seq`` and the producer
  headers, checked as the protocol's sections 5.1, 5.2 and 5.2.1 say.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from hub.backplane.streams import Producer
from hub.events import InvalidInput

__all__ = [
    "MAX_SAFE_INTEGER",
    "Cursors",
    "expires_at",
    "format_expiry",
    "format_offset",
    "is_closed",
    "parse_offset",
    "producer",
    "stream_seq",
    "ttl",
]

#: JavaScript's largest exact integer: the protocol's bound on producer epochs and seqs.
MAX_SAFE_INTEGER = 2**53 - 1
_DIGITS = re.compile(r"[0-9]{1,20}")
_TTL = re.compile(r"0|[1-9][0-9]{0,9}")
_INTEGER = re.compile(r"[0-9]{1,16}")
_MAX_HEADER = 256
#: The protocol's cursor epoch (2024-10-09T00:00:00Z) and interval.
CURSOR_EPOCH = 1728432000.0
CURSOR_INTERVAL = 20.0
#: 9999-01-01T00:00:00Z: no expiry at or past it (it could not be written back as RFC 3339
#: once a zone offset pushed it into year 10000).
_LAST_EXPIRY = 253370764800.0


def format_offset(position: int) -> str:
    return f"{position:020d}"


def parse_offset(value: str | None, start: int, tail: int) -> int:
    """The position a read starts after: ``None`` or ``-1``: the start; ``now``: the tail; an
    offset below the start (an earlier stream of the same name) reads from the start."""
    if value is None or value == "-1":
        return start
    if value == "now":
        return tail
    if not _DIGITS.fullmatch(value):
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise InvalidInput(f"invalid offset {shown!r}: use -1, now, or a Stream-Next-Offset")
    position = int(value)
    if position > tail:
        raise InvalidInput(f"offset {value} is past the stream's tail ({format_offset(tail)})")
    return max(position, start)


class Cursors:
    """The process's cursors (see the module docstring)."""

    def __init__(self) -> None:
        self._floor = 0

    def current(self) -> int:
        interval = int((time.time() - CURSOR_EPOCH) // CURSOR_INTERVAL)
        return max(interval, self._floor)

    def echoed(self, value: str | None) -> None:
        """A request's ``cursor``: one at or past the current one raises the floor past it. A
        malformed one, or one more than a day ahead (a client cannot have been given it), is
        ignored."""
        if value is None or not _DIGITS.fullmatch(value):
            return
        cursor = int(value)
        now = self.current()
        if now <= cursor <= now + 86400 // int(CURSOR_INTERVAL):
            self._floor = cursor + 1


def is_closed(value: str | None) -> bool:
    """``Stream-Closed``: present only when exactly ``true`` (any case); other values are
    ignored, as the protocol says."""
    return value is not None and value.lower() == "true"


def ttl(value: str | None) -> int | None:
    if value is None:
        return None
    if not _TTL.fullmatch(value):
        raise InvalidInput(
            "Stream-TTL must be a whole number of seconds (no sign, leading zero or fraction)"
        )
    return int(value)


def expires_at(value: str | None) -> float | None:
    """``Stream-Expires-At``: an RFC 3339 time (``Z`` or an offset) from 1970 to 9998, as
    seconds since the epoch."""
    if value is None:
        return None
    shown = value[:40]
    try:
        parsed = datetime.fromisoformat(value) if len(value) <= 64 else None
        seconds = parsed.timestamp() if parsed is not None and parsed.tzinfo else None
    except (ValueError, OverflowError, OSError):  # (a date, or a year out of range)
        seconds = None
    if seconds is None or not 0 <= seconds < _LAST_EXPIRY:
        raise InvalidInput(
            f"Stream-Expires-At {shown!r} is not an RFC 3339 time with a zone (Z or +hh:mm) "
            "from 1970 to 9998"
        )
    return seconds


def format_expiry(seconds: float) -> str:
    """An expiry as RFC 3339 in UTC, to the millisecond (as JavaScript's toISOString)."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def stream_seq(value: str | None) -> str | None:
    if value is None:
        return None
    if not value or len(value) > _MAX_HEADER or not value.isascii() or not value.isprintable():
        raise InvalidInput(f"Stream-Seq must be 1-{_MAX_HEADER} printable ASCII characters")
    return value


def producer(id: str | None, epoch: str | None, seq: str | None) -> Producer | None:
    """The producer headers: all three or none (400 otherwise, or for a malformed one)."""
    given = [value is not None for value in (id, epoch, seq)]
    if not any(given):
        return None
    if id is None or epoch is None or seq is None:
        raise InvalidInput("Producer-Id, Producer-Epoch and Producer-Seq go together: send all")
    if not id or len(id) > _MAX_HEADER or not id.isascii() or not id.isprintable():
        raise InvalidInput(f"Producer-Id must be 1-{_MAX_HEADER} printable ASCII characters")
    numbers = []
    for name, value in (("Producer-Epoch", epoch), ("Producer-Seq", seq)):
        if not _INTEGER.fullmatch(value) or int(value) > MAX_SAFE_INTEGER:
            raise InvalidInput(f"{name} must be an integer from 0 to {MAX_SAFE_INTEGER}")
        numbers.append(int(value))
    return Producer(id, numbers[0], numbers[1])
