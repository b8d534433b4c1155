"""Clock channels: ``time/<timezone>/<seconds>``, one ticker task per channel, never per client.

A clock's ticker starts with its channel's first subscriber and is cancelled when the last one
leaves (the hub owns that decision). Ticks land on whole multiples of the interval since the
epoch, so every hub process ticks a given clock at the same instants. Ticks are ephemeral: no
``id:`` line and no history, so they never disturb a ``Last-Event-ID`` resume of other channels
on the same stream.
"""

from __future__ import annotations

import asyncio
import functools
import time
import zoneinfo
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson

from hub import sse
from hub.events import CHANNEL_RE, InvalidInput

__all__ = [
    "CLOCK_EVENT",
    "CLOCK_PREFIX",
    "Clock",
    "clock_channel",
    "format_date_time",
    "is_clock",
    "parse_clock",
    "timezones",
]

CLOCK_PREFIX = "time/"
CLOCK_EVENT = "UPDATE"
MIN_INTERVAL = 1
MAX_INTERVAL = 3600


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
    if name not in timezones():
        raise InvalidInput(f"unknown timezone {name!r}: use an IANA name such as Europe/London")
    return name


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
    """The ticker of one clock channel; ``emit`` fans a ready-made frame out to its subscribers."""

    def __init__(self, channel: str, emit: Callable[[str, bytes], None]) -> None:
        self.channel = channel
        self.timezone, self.interval = parse_clock(channel)
        self._zone = zoneinfo.ZoneInfo(self.timezone)
        self._emit = emit
        self.ticks = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def frame(self, now: float) -> bytes:
        moment = datetime.fromtimestamp(int(now), self._zone)
        data = {
            "id": self.ticks,
            "dateTime": format_date_time(moment),
            "iso": moment.isoformat(),
            "timezone": self.timezone,
        }
        return sse.encode(CLOCK_EVENT, orjson.dumps(data).decode())

    def start(self) -> None:
        if not self.running:
            self._task = asyncio.create_task(self._run(), name=f"clock {self.channel}")

    def stop(self) -> asyncio.Task[None] | None:
        """Cancel the ticker; returns the task so a caller shutting down can await it."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        return task

    async def _run(self) -> None:
        interval = self.interval
        due = (time.time() // interval + 1) * interval
        while True:
            # Sleeping toward a fixed instant (not "interval from now") keeps ticks from drifting,
            # and an early wake-up cannot produce the same tick twice.
            await asyncio.sleep(max(0.0, due - time.time()))
            self.ticks += 1
            self._emit(self.channel, self.frame(due))
            due += interval
            now = time.time()
            if due <= now:  # the process was stalled: skip the ticks it missed
                due = (now // interval + 1) * interval
