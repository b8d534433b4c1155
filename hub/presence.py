"""Presence channels (``presence = ["rooms/*"]``): ``presence/<channel>`` tells who comes and goes.

For a channel C matching a ``presence`` pattern, the channel ``presence/C`` carries
``event: join`` / ``event: leave`` with ``{"channel", "subscribers", "change", "who"}``:
``subscribers`` is C's count on every hub process as best known (this process's own count now,
the others' as the backplane's ``Presence`` last shared them, a few seconds old; a single
process counts alone), ``change`` the net change the event reports, and ``who`` (only on a
private channel, and only when a grant named one) the ``sub`` claims whose first stream of C on
this process joined, or last one left. It is published through the backplane like any event, so
it has ids, history, resume, and the grants of C (``hub.grants``: ``presence/C`` is private when
C is); only the hub writes it (``hub.api.publish`` refuses a publish to it, as to a clock).

Coalesced: each process adds up the joins and leaves of C on it, and once a second
(``INTERVAL``) publishes the net change as one event (``join`` when positive, ``leave`` when
negative; a zero change with subs both ways goes out as a join, then the leaves the next
second; a zero change without subs sends nothing).

At most one event a second per channel *hub-wide*, without a leader: every publish carries the
idempotency key ``ssehub-presence:<C>:<Unix second>``, which the backplane stores once on every
backplane (``hub.backplane``'s contract). The first process to publish in a second wins; the
others are answered ``replayed``, keep their change and add it to the next second's. So no
change is lost, none is sent twice, and no process needs to know the others; under contention
a process's change waits a second or a few. The cost: one idempotency record per event
(``history_ttl``, as a client's key). Processes whose clocks differ by a fraction of a second
may each publish within one real second. A leader per channel would need the processes to
agree on who is there, and the ``who`` of the others' joins, which counts do not carry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from hub.backplane import BackplaneFull, BackplaneUnavailable, ChannelDeleted, Published
from hub.events import Draft, InvalidInput, encode_draft
from hub.patterns import Patterns

__all__ = ["INTERVAL", "PREFIX", "PresenceChannels", "Publish", "tracked_of"]

log = logging.getLogger("hub.presence")

#: The prefix of a presence channel's name.
PREFIX = "presence/"
#: Seconds between a process's events on one presence channel, at least.
INTERVAL = 1.0
#: Seconds a stopping hub gives the leaves of the streams it ended.
_LAST_WORDS = 1.0
#: Presence events published concurrently, at most (the rest of a second's wait their turn).
_AT_ONCE = 100
#: The longest channel name (``hub.events.CHANNEL_RE``): C's presence channel must fit.
_MAX_NAME = 200

Publish = Callable[[Sequence[Draft], str | None], Awaitable[Published]]


def tracked_of(name: str, patterns: Patterns | None) -> str | None:
    """The channel C whose presence channel ``name`` is (``presence/C``, C matching
    ``patterns``), else None; ``hub.grants`` makes it as private as C."""
    if patterns is None or not name.startswith(PREFIX):
        return None
    tracked = name[len(PREFIX) :]
    return tracked if tracked and _watches(patterns, tracked) else None


def _watches(patterns: Patterns, name: str) -> bool:
    # presence/presence/... would follow itself; a name that cannot take the prefix has none
    return (
        not name.startswith(PREFIX)
        and len(name) + len(PREFIX) <= _MAX_NAME
        and patterns.match(name)
    )


class _Change:
    """A channel's joins and leaves on this process not published yet."""

    __slots__ = ("net", "who")

    def __init__(self) -> None:
        self.net = 0
        self.who: dict[str, int] = {}  # sub -> its net joins

    def add(self, step: int, who: str | None) -> None:
        self.net += step
        if who is not None:
            count = self.who.get(who, 0) + step
            if count:
                self.who[who] = count
            else:
                del self.who[who]

    def merge(self, other: _Change) -> None:
        self.net += other.net
        for who, count in other.who.items():
            self.add(count, who)
            self.net -= count  # add() counted it in net again

    def split(self) -> tuple[str, list[str], _Change] | None:
        """The event to publish (its type, its subs) and what waits for the next one."""
        joined = sorted(w for w, n in self.who.items() if n > 0)
        left = sorted(w for w, n in self.who.items() if n < 0)
        rest = _Change()
        if self.net > 0 or (self.net == 0 and joined):
            rest.who = {w: self.who[w] for w in left}
            return "join", joined, rest
        if self.net < 0 or left:
            rest.who = {w: self.who[w] for w in joined}
            return "leave", left, rest
        return None


class PresenceChannels:
    """This process's joins and leaves of presence-tracked channels, published once a second."""

    def __init__(
        self,
        patterns: Sequence[str],
        private: Patterns | None,
        publish: Publish,
        count: Callable[[str], int],
        max_event_bytes: int,
    ) -> None:
        self.patterns = Patterns(patterns)
        self._private = private
        self._publish = publish
        self._count = count
        self._max_event_bytes = max_event_bytes
        self._pending: dict[str, _Change] = {}
        self._who: dict[tuple[object, str], str] = {}  # (stream, channel) -> its grant's sub
        self._streams_of: dict[tuple[str, str], int] = {}  # (channel, sub) -> its streams here

    def watches(self, name: str) -> bool:
        return _watches(self.patterns, name)

    def joined(self, name: str, stream: object, who: str | None) -> None:
        """A stream joined ``name``; ``who`` counts on a private channel only, and only with
        its first stream here (a second tab of alice's is a subscriber more, not a new who)."""
        told = None
        if who is not None and self._private is not None and self._private.match(name):
            self._who[stream, name] = who
            streams = self._streams_of[name, who] = self._streams_of.get((name, who), 0) + 1
            told = who if streams == 1 else None
        self._change(name).add(1, told)

    def left(self, name: str, stream: object) -> None:
        told = who = self._who.pop((stream, name), None)
        if who is not None:
            streams = self._streams_of.pop((name, who)) - 1
            if streams:
                self._streams_of[name, who] = streams
                told = None
        self._change(name).add(-1, told)

    def _change(self, name: str) -> _Change:
        change = self._pending.get(name)
        if change is None:
            change = self._pending[name] = _Change()
        return change

    async def publish_forever(self) -> None:
        """Every ``INTERVAL``: one event per channel with a change (see the module docstring).

        Cancelled at shutdown, after the hub ended its streams: their leaves are published
        then, within ``_LAST_WORDS`` seconds, as the next second's (this process publishes in
        no later one; another that took that second's key already wins, and they are lost)."""
        try:
            while True:
                await asyncio.sleep(INTERVAL)
                if self._pending:
                    await self.publish_pending(int(time.time()))
        except asyncio.CancelledError:
            if self._pending:
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    async with asyncio.timeout(_LAST_WORDS):
                        await self.publish_pending(int(time.time()) + 1)
            raise

    async def publish_pending(self, second: int) -> None:
        """One event per channel with a change, ``_AT_ONCE`` publishes in flight at a time."""
        pending, self._pending = self._pending, {}
        items = list(pending.items())
        for start in range(0, len(items), _AT_ONCE):
            chunk = items[start : start + _AT_ONCE]
            await asyncio.gather(*(self._publish_one(name, c, second) for name, c in chunk))

    async def _publish_one(self, name: str, change: _Change, second: int) -> None:
        split = change.split()
        if split is None:
            return
        kind, who, rest = split
        data: dict[str, Any] = {
            "channel": name,
            "subscribers": self._count(name),
            "change": change.net,
        }
        if who:
            data["who"] = who
        if not await self._send(name, kind, data, f"ssehub-presence:{name}:{second}"):
            rest = change  # not published: all of it waits for the next second
        if rest.net or rest.who:
            self._change(name).merge(rest)

    async def _send(self, name: str, kind: str, data: dict[str, Any], key: str) -> bool:
        """True when published (or the change is to be dropped); False: try again later."""
        try:
            draft = encode_draft(PREFIX + name, kind, data, self._max_event_bytes)
            published = await self._publish([draft], key)
        except BackplaneUnavailable:
            return False
        except (ChannelDeleted, BackplaneFull, InvalidInput) as problem:
            log.warning("presence of %r not published: %s", name, problem,
                        extra={"event": "presence-dropped"})  # fmt: skip
            return True
        return not published.replayed
