"""Clock channels: ``time/<timezone>/<seconds>``, one ticker task per channel, never per client.

A clock's ticker starts with its channel's first subscriber and is cancelled when the last one
leaves (the hub owns that decision). Ticks land on whole multiples of the interval since the
epoch, and a tick's ``id`` in its data is that multiple (whole intervals since 1970-01-01T00:00Z):
every hub process ticks a given clock at the same instants with the same ids, and a ticker that
stops and starts again carries on counting rather than starting over. Each tick names its
``channel`` and ``interval``, so one stream can carry clocks that differ only in interval. Ticks
are ephemeral: no ``id:`` line and no history, so they never disturb a ``Last-Event-ID`` resume
of other channels on the same stream.

Each tick also carries the zone's ``offset`` and ``abbreviation`` at its instant, and the ticker
announces a change of them (a DST transition) with an ``event: offset`` frame before its first
tick in the new offset: once per channel, from its one ticker, like the ticks. The time a clock
tells comes from a ``TimeSource`` (hub/clock_time.py): the system clock, or a test's.
"""

from __future__ import annotations

import asyncio
import difflib
import functools
import time
import zoneinfo
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson

from hub import sse
from hub.clock_time import SYSTEM_TIME, Labels, TimeSource, labels_of, transition_in
from hub.events import CHANNEL_RE, InvalidInput

__all__ = [
    "CLOCK_EVENT",
    "CLOCK_PREFIX",
    "OFFSET_EVENT",
    "Clock",
    "clock_channel",
    "clock_sources",
    "format_date_time",
    "is_clock",
    "parse_clock",
    "resolve_timezone",
    "timezones",
]

CLOCK_PREFIX = "time/"
CLOCK_EVENT = "UPDATE"
OFFSET_EVENT = "offset"
MIN_INTERVAL = 1
MAX_INTERVAL = 3600
#: how a ticker hands a frame to the hub, which fans it out to the channel's subscribers
Emit = Callable[[str, bytes], None]


@functools.cache
def timezones() -> frozenset[str]:
    """IANA names zoneinfo can load here (from the system or the ``tzdata`` package).

    Only those that fit in a channel name: ``Etc/GMT+5`` and its kin have a ``+``, which channel
    names do not allow, so they could be listed and declared but never subscribed to.
    """
    return frozenset(name for name in zoneinfo.available_timezones() if CHANNEL_RE.fullmatch(name))


def is_clock(channel: str) -> bool:
    return channel.startswith(CLOCK_PREFIX)


def clock_channel(timezone: str, interval: int) -> str:
    return f"{CLOCK_PREFIX}{timezone}/{interval}"


def parse_clock(channel: str) -> tuple[str, int]:
    """Split and check ``time/<timezone>/<seconds>``; bad ones raise ``InvalidInput`` (400)."""
    rest = channel[len(CLOCK_PREFIX) :]
    timezone, _, seconds = rest.rpartition("/")
    if not timezone or not seconds.isascii() or not seconds.isdigit():
        raise InvalidInput(
            f"invalid clock channel {channel!r}: use time/<IANA timezone>/<seconds>, "
            "e.g. time/Europe/London/5"
        )
    interval = check_interval(seconds)
    if str(interval) != seconds:  # one spelling per clock, so "05" cannot split a channel in two
        raise InvalidInput(f"invalid clock interval {seconds!r}: write it as {interval}")
    return check_timezone(timezone), interval


def check_timezone(name: str) -> str:
    """The IANA name as it is, or 400 naming the close ones (a channel name is exact)."""
    if name not in timezones():
        raise InvalidInput(_unknown(name))
    return name


def resolve_timezone(text: str) -> str:
    """An IANA name, or a bare city (any case, spaces for underscores) that names exactly one
    zone: ``Kolkata`` is ``Asia/Kolkata``, as the page's search takes it. Else 400 with the
    close names."""
    if text in timezones():
        return text
    found = _by_lowercase().get(text.lower().replace(" ", "_"), ())
    if len(found) == 1:
        return found[0]
    raise InvalidInput(_unknown(text, found))


@functools.cache
def _by_lowercase() -> dict[str, tuple[str, ...]]:
    """Lowercased full names and last parts (``kolkata``, ``new_york``) -> the zones."""
    index: dict[str, list[str]] = {}
    for zone in sorted(timezones()):
        for key in {zone.lower(), zone.rpartition("/")[2].lower()}:
            index.setdefault(key, []).append(zone)
    return {key: tuple(zones) for key, zones in index.items()}


@functools.lru_cache(maxsize=256)  # a bad name repeats (an EventSource retrying it)
def _unknown(text: str, candidates: tuple[str, ...] = ()) -> str:
    message = f"unknown timezone {text!r}: use an IANA name such as Europe/London"
    if len(text) > 64:
        return message
    suggestions = list(candidates[:5])
    if not suggestions:
        index = _by_lowercase()
        wanted = text.lower().replace(" ", "_")
        for key in difflib.get_close_matches(wanted, index, n=3, cutoff=0.8):
            suggestions.extend(zone for zone in index[key] if zone not in suggestions)
    if not suggestions:
        return message
    return f"{message}; did you mean {' or '.join(suggestions[:5])}?"


def check_interval(value: Any) -> int:
    try:
        interval = int(value)
    except (TypeError, ValueError):
        interval = 0
    if isinstance(value, bool) or not MIN_INTERVAL <= interval <= MAX_INTERVAL:
        raise InvalidInput(
            f"invalid clock interval {value!r}: use whole seconds from {MIN_INTERVAL} "
            f"to {MAX_INTERVAL}"
        )
    return interval


def format_date_time(moment: datetime) -> str:
    """D/M/YYYY H:M:S without zero padding, as the original server's getFormattedDate() wrote."""
    return (
        f"{moment.day}/{moment.month}/{moment.year} {moment.hour}:{moment.minute}:{moment.second}"
    )


class Clock:
    """The ticker of one clock channel; ``emit`` fans a ready-made frame out to its subscribers.

    Each tick carries the zone's ``offset`` and ``abbreviation`` beside ``iso``. When they change
    (a DST transition), the ticker sends an ``event: offset`` frame at the transition's instant,
    before its first tick in the new offset (with that tick when it falls on the instant), so a
    client learns of the change before the first tick that tells it. Only the ticker sends one:
    a subscriber who joins after the instant gets the new labels in its first frame, which is all
    it needs, and one who joins before it gets the old labels and then the notice.
    """

    def __init__(self, channel: str, emit: Emit, time_source: TimeSource = SYSTEM_TIME) -> None:
        self.channel = channel
        self.timezone, self.interval = parse_clock(channel)
        self._zone = zoneinfo.ZoneInfo(self.timezone)
        self._emit = emit
        self._time = time_source
        #: ticks this ticker has emitted since it was created (not their ids: those count from
        #: the epoch, see ``frame``)
        self.ticks = 0
        self._due = 0  # the next tick instant the running ticker will emit
        # the next instant the running ticker will emit anything: ``_due``, or a transition's
        # instant before it when an offset notice is pending
        self._wake = 0
        self._task: asyncio.Task[None] | None = None
        # the labels the ticker last told (at start: those of the time then), and when: what
        # the next tick's are compared with to see a transition
        self._told_at = 0
        self._told: Labels = ("", "")
        # the newest frame made and its second: subscribers joining in the same second as a
        # tick or as each other (a reconnecting herd) share its bytes
        self._made: tuple[int, bytes, Labels] = (-1, b"", ("", ""))

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def frame(self, now: float) -> bytes:
        """The tick for the current time (the system clock reads ``now``): a new subscriber's
        first frame.

        Its ``id`` is that of the last tick instant at or before now. One exception keeps a
        subscriber from getting the same id twice, or the new offset before its notice: when
        the ticker is a moment late for what is due (now is past a tick or a transition it has
        not emitted yet), the frame tells the time just before that, and what is due comes next.
        """
        now = self._time.now(now)
        if self.running and now >= self._wake:
            now = self._wake - 1
        return self._frame(int(now))[0]  # floor for any time after 1970: whole seconds on

    def _frame(self, second: int) -> tuple[bytes, Labels]:
        """The tick of ``second`` and the zone's labels then."""
        if self._made[0] != second:
            moment = datetime.fromtimestamp(second, self._zone)
            labels = labels_of(moment)
            self._made = (second, self._encode(second, moment, labels), labels)
        return self._made[1], self._made[2]

    def _encode(self, second: int, moment: datetime, labels: Labels) -> bytes:
        offset, abbreviation = labels
        data = {
            "id": second // self.interval,
            "dateTime": format_date_time(moment),
            "iso": moment.isoformat(),
            "timezone": self.timezone,
            "channel": self.channel,
            "interval": self.interval,
            "offset": offset,
            "abbreviation": abbreviation,
        }
        return sse.encode_line(CLOCK_EVENT, orjson.dumps(data))

    def _announce(self, at: int, labels: Labels) -> None:
        """Send the offset notice of a transition at ``at`` to ``labels``."""
        offset, abbreviation = labels
        data = {
            "timezone": self.timezone,
            "offset": offset,
            "abbreviation": abbreviation,
            "at": datetime.fromtimestamp(at, self._zone).isoformat(),
            "channel": self.channel,  # routes it on a stream of several clocks, as a tick's does
        }
        self._told_at, self._told = at, labels
        self._emit(self.channel, sse.encode_line(OFFSET_EVENT, orjson.dumps(data)))

    def start(self) -> None:
        if not self.running:
            now = int(self._time.now(time.time()))
            self._due = self._wake = self._next_due(now)
            self._told_at = now
            self._told = labels_of(datetime.fromtimestamp(now, self._zone))
            self._task = asyncio.create_task(self._run(), name=f"clock {self.channel}")

    def stop(self) -> asyncio.Task[None] | None:
        """Cancel the ticker; returns the task so a caller shutting down can await it."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        return task

    def _next_due(self, now: float) -> int:
        """The first tick instant strictly after ``now``."""
        return (int(now) // self.interval + 1) * self.interval

    async def _run(self) -> None:
        while True:
            due = self._due
            tick, labels = self._frame(due)  # made ahead: its labels say what is coming
            if labels != self._told:
                at = transition_in(self._zone, self._told_at, due)
                if at < due:  # a clock whose ticks do not land on the transition
                    self._wake = at
                    await self._time.sleep_until(at)
                    self._announce(at, labels)
                    self._wake = due
            # Sleeping toward a fixed instant (not "interval from now") keeps ticks from drifting,
            # and an early wake-up cannot produce the same tick twice.
            await self._time.sleep_until(due)
            if labels != self._told:
                self._announce(due, labels)  # the transition is this tick's instant
            self.ticks += 1
            self._emit(self.channel, tick)
            # No await between emitting and moving on: ``frame`` relies on ``_wake`` naming
            # what has not been emitted.
            now = self._time.now(time.time())
            # After a stall (the process was stopped, the loop was blocked) skip the missed
            # ticks: their ids are skipped too, so ids still only grow.
            self._due = due + self.interval if due + self.interval > now else self._next_due(now)
            self._wake = self._due


def clock_sources(time_source: TimeSource) -> Callable[[str, Emit], Clock | None]:
    """The hub's source factory (``Hub(..., sources)``): a ticker reading ``time_source`` for a
    clock channel, None for any other channel. ``create_app`` passes the system clock, or the
    time source a test gave it."""

    def source(channel: str, emit: Emit) -> Clock | None:
        return Clock(channel, emit, time_source) if is_clock(channel) else None

    return source
