"""The checks of the settings' values: numbers in bounds, strings, lists, choices, networks,
directories and the declared clocks.

Each takes what the file, the environment or a flag gave and returns the value to keep, or
raises ``ValueError`` saying what was expected; ``hub.config`` turns that into a ``ConfigError``
naming the key and where it was set. Apart from the ``Config`` dataclass (``hub.config_fields``)
so that the table of settings reads as a table, and from the loader so that the precedence
rules read on one page.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from hub.events import InvalidInput
from hub.ticker import check_interval, check_timezone

__all__ = [
    "ClockSpec",
    "choice",
    "clocks",
    "directory",
    "flag",
    "integer",
    "networks",
    "number",
    "text",
    "texts",
    "workers",
    "workers_of",
]


@dataclass(frozen=True, slots=True)
class ClockSpec:
    """A clock declared in the config: its channel ticks from start-up, subscribers or not."""

    timezone: str
    interval: int


def integer(low: int, high: int | None = None) -> Callable[[Any], int]:
    """A whole number from ``low`` to ``high`` (no upper bound: None); a bool is not one."""

    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("expected a whole number")
        if value < low or (high is not None and value > high):
            raise ValueError(f"expected {low} to {high}" if high else f"expected at least {low}")
        return value

    return check


#: Most worker processes one hub runs (a guard against a typo like 1000).
MAX_WORKERS = 256


def workers(value: Any) -> int | str:
    """``workers``: a number of processes, or "auto" (the CPUs this process may run on)."""
    if value == "auto":
        return "auto"
    try:
        return integer(1, MAX_WORKERS)(value)
    except ValueError:
        raise ValueError(f'expected "auto" or a whole number from 1 to {MAX_WORKERS}') from None


def workers_of(value: int | str) -> int:
    """How many worker processes ``workers`` means on this machine."""
    if value != "auto":
        return int(value)
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_WORKERS))


def number(low: float, high: float | None = None) -> Callable[[Any], float]:
    """A number (whole or not) from ``low`` to ``high``, as a float."""

    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("expected a number")
        if value < low or (high is not None and value > high):
            bounds = f"{low:g} to {high:g}" if high else f"at least {low:g}"
            raise ValueError(f"expected {bounds}")
        return float(value)

    return check


def text(value: Any) -> str:
    """A string."""
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


def texts(value: Any) -> tuple[str, ...]:
    """A list of strings, kept as a tuple (the config is frozen)."""
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError("expected a list of strings")
    return tuple(value)


def flag(value: Any) -> bool:
    """true or false, nothing that merely looks like one."""
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def choice(kind: Any) -> Callable[[Any], str]:
    """One of a ``Literal``'s values."""
    options = get_args(kind)

    def check(value: Any) -> str:
        if value not in options:
            raise ValueError("expected one of " + ", ".join(options))
        return str(value)

    return check


def networks(value: Any) -> tuple[str, ...]:
    """Addresses or CIDRs (``10.0.0.0/8``, ``::1``); kept as text, parsed by hub.clients."""
    items = texts(value)
    for item in items:
        try:
            ipaddress.ip_network(item.strip(), strict=False)
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or CIDR network") from None
    return tuple(item.strip() for item in items)


def directory(value: Any) -> str:
    """A directory that exists, or "" (none)."""
    path = text(value)
    if path and not Path(path).is_dir():
        raise ValueError("no such directory")
    return path


def clocks(value: Any) -> tuple[ClockSpec, ...]:
    """The declared clocks: ``{timezone, interval}`` tables, each zone and interval checked as
    the clock routes check them (``hub.ticker``)."""
    if not isinstance(value, list | tuple):
        raise ValueError('expected a list of {timezone = "...", interval = seconds} tables')
    specs = []
    for item in value:
        if isinstance(item, ClockSpec):
            item = {"timezone": item.timezone, "interval": item.interval}
        if not isinstance(item, dict) or set(item) != {"timezone", "interval"}:
            raise ValueError(f'expected {{timezone = "...", interval = seconds}}, got {item!r}')
        try:
            specs.append(
                ClockSpec(check_timezone(item["timezone"]), check_interval(item["interval"]))
            )
        except InvalidInput as error:
            raise ValueError(str(error)) from None
    return tuple(specs)
