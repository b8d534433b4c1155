"""Server-side filters (``?event=``, ``?tag=``) and replay by time (``?since=``): their syntax and
their test.

A ``Filter`` is part of a stream's ``View`` (``hub.view``): views are interned per format and
filter, so streams that asked for the same filter (in any order of its parameters) share one
view, a channel keeps them in one group (``hub.channel``), and ``Hub.deliver`` tests each event
once per group, never once per subscriber. ``reset`` and ``close`` frames are no events and
always pass; a history replay applies the same test (``hub.stream``).

Syntax, each parameter repeatable:

- ``event=<type>``: any of the types given (``message`` is the type of an event without one);
- ``tag=<name>:<value>``: every ``tag=`` must match (all of); ``tag=tier:gold|silver`` matches
  either value (any of). Names have no ``:`` (``hub.events.TAG_NAME_RE``), so the first ``:``
  parts name and value.

A bad one is a 400 JSON error, as a bad ``replay=`` is: a query an ``EventSource`` was built
with does not get better by retrying it.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from datetime import datetime

from hub.events import (
    EVENT_NAME_RE,
    MAX_TAGS,
    TAG_NAME_RE,
    Event,
    InvalidInput,
    check_event_name,
    event_name,
)

__all__ = ["MAX_FILTER_EVENTS", "Filter", "parse_filter", "parse_since"]

#: ``event=`` values on one stream at most; ``tag=`` alternatives of one name likewise.
MAX_FILTER_EVENTS = 32

_UNIX_SECONDS = re.compile(r"[0-9]{1,12}(\.[0-9]{1,9})?")


class Filter:
    """What a stream lets through: event types (None: any) and tag clauses (all must hold,
    each any of its ``name:value`` strings). Equal filters have equal ``key``s."""

    __slots__ = ("clauses", "events", "key", "starts")

    def __init__(self, events: frozenset[bytes] | None, clauses: frozenset[frozenset[str]]):
        self.events = events
        self.clauses = tuple(tuple(sorted(clause)) for clause in sorted(clauses, key=sorted))
        self.key = (events, clauses)
        # what a frame holds right after its id line for each type: compared in place, with no
        # bytes cut out of the frame (``message``: no ``event:`` line, the data comes first)
        self.starts = tuple(
            b"\ndata: " if name == b"message" else b"\nevent: " + name + b"\n"
            for name in sorted(events or ())
        )

    def passes(self, event: Event) -> bool:
        """Whether the event goes to the streams of this filter (once per event and filter)."""
        if self.starts:
            frame = event.frame
            at = frame.find(b"\n")  # the end of the id line
            for start in self.starts:
                if frame.startswith(start, at):
                    break
            else:
                return False
        tags = event.tags
        for clause in self.clauses:
            for choice in clause:
                if choice in tags:
                    break
            else:
                return False
        return True

    def passes_frame(self, frame: bytes) -> bool:
        """For a frame of an ephemeral channel (a clock's tick): it has a type and no tags."""
        return not self.clauses and (self.events is None or event_name(frame) in self.events)


def parse_filter(events: Sequence[str], tags: Sequence[str]) -> Filter | None:
    """The filter of a subscribe's ``event=`` and ``tag=`` values (None: no filter), or
    ``InvalidInput`` naming the bad one."""
    if not events and not tags:
        return None
    if len(events) > MAX_FILTER_EVENTS:
        raise InvalidInput(f"{len(events)} event= values; at most {MAX_FILTER_EVENTS}")
    if len(tags) > MAX_TAGS:
        raise InvalidInput(f"{len(tags)} tag= values; at most {MAX_TAGS} (events have no more)")
    for name in events:
        try:
            check_event_name(name)
        except InvalidInput as problem:
            raise InvalidInput(f"event={name!r}: {problem}") from None
    clauses: dict[str, frozenset[str]] = {}
    for given in tags:
        name, colon, values = given.partition(":")
        if not colon or not TAG_NAME_RE.fullmatch(name):
            raise InvalidInput(
                f"tag={given!r}: use tag=<name>:<value> or tag=<name>:<value>|<value>; a name is "
                "1-64 characters of A-Z a-z 0-9 _ . -"
            )
        choices = values.split("|")
        if len(choices) > MAX_FILTER_EVENTS:
            raise InvalidInput(f"tag={name}: {len(choices)} values; at most {MAX_FILTER_EVENTS}")
        for value in choices:
            if not EVENT_NAME_RE.fullmatch(value):
                raise InvalidInput(
                    f"tag={given!r}: invalid value {value!r}; use 1-64 characters of "
                    "A-Z a-z 0-9 _ . : -"
                )
        clause = frozenset(f"{name}:{value}" for value in choices)
        # two tag= of one name: both must hold, i.e. the values both allow
        clauses[name] = clauses[name] & clause if name in clauses else clause
    kinds = frozenset(name.encode() for name in events) if events else None
    return Filter(kinds, frozenset(clauses.values()))


def parse_since(text: str, now: float | None = None) -> float:
    """``since=``: an RFC 3339 time (with its offset, or ``Z``) or Unix seconds, as seconds
    since the epoch; ``InvalidInput`` when unparsable or in the future."""
    if _UNIX_SECONDS.fullmatch(text):
        when = float(text)
    else:
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            parsed = None
        if parsed is None or parsed.tzinfo is None:
            raise InvalidInput(
                f"since={text[:60]!r} is not understood: use an RFC 3339 time with its offset "
                "(2026-12-07T10:00:00Z) or Unix seconds (1796637600)"
            )
        when = parsed.timestamp()
    now = time.time() if now is None else now
    if not math.isfinite(when) or when > now:
        raise InvalidInput(f"since={text[:60]!r} is in the future: the hub's time is {now:.3f}")
    return when
