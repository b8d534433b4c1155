"""Log lines for clients turned away by a limit: never silent, never a flood.

A refusal the operator cannot see is a limit they cannot tune: an office behind one NAT, or a
proxy missing from ``trusted_proxies``, looks like one busy address, and only a log line saying
*who* was turned away *by which setting* tells them so. But a client over a limit retries, and an
attacker refuses to stop, so the lines themselves are limited:

- at most one line per (client, setting) per ``WINDOW`` seconds; the refusals in between are
  counted and told on the next line of that pair ("... and 312 more since 12:00:01");
- at most ``LINES_PER_WINDOW`` lines per window in all, so an attacker with many addresses
  cannot turn the log into a flood either; the refusals past it are counted and told, with how
  many clients they came from, on the first line of the next window;
- at most ``MAX_TRACKED`` pairs remembered (a pair is ~200 bytes): past it the oldest are
  forgotten and their untold refusals join the count of the window.

A client address is written escaped (no raw control character reaches a line, whatever a
proxy or a peer sent). ``Refusals.proxy_headers`` gives one warning per process when proxy
headers arrive from a peer that is not a trusted proxy while limits key on the address.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from hub.logs import escape

if TYPE_CHECKING:
    from hub.config import Config

__all__ = ["LINES_PER_WINDOW", "MAX_TRACKED", "WINDOW", "Refusals", "shown_as"]

log = logging.getLogger("hub.refusals")

#: Seconds between two lines about the same client and setting.
WINDOW = 60.0
#: Lines about refusals per window, all clients together.
LINES_PER_WINDOW = 100
#: (client, setting) pairs remembered at most.
MAX_TRACKED = 4096
#: Longest client text written (an address is at most 45 characters; the rest is noise).
_MAX_SHOWN = 64

_proxy_warned = False


def shown_as(text: str) -> str:
    """A client's address as a log line shows it: ``hub.logs.escape``d (no control character),
    cut at ``_MAX_SHOWN`` characters; ``"?"`` for an empty one (a unix socket peer)."""
    if not text:
        return "?"
    if len(text) > _MAX_SHOWN:
        text = text[:_MAX_SHOWN] + "..."
    return escape(text)


def _limit(config: Config, setting: str) -> str:
    """What ``setting`` allows, for the log line: the operator sees the value it would raise."""
    c = config
    return {
        "subscribe_rate": f"{c.subscribe_rate:g} new streams a second per address, "
        f"{c.subscribe_burst} at once (subscribe_burst)",
        "max_client_streams": f"{c.max_client_streams} open streams per address",
        "max_client_channels": f"{c.max_client_channels} channels brought into being per address",
        "max_subscribers": f"{c.max_subscribers} streams in all",
        "max_channels": f"{c.max_channels} channels in all",
        "publish_rate": f"{c.publish_rate:g} events a second per publisher, "
        f"{c.publish_burst} at once (publish_burst)",
    }.get(setting, "")


class Refusals:
    """``refused(client, setting, what)`` after each refusal; logs as the module says."""

    __slots__ = (
        "_config",
        "_lines",
        "_overflow",
        "_overflow_clients",
        "_pairs",
        "_window_start",
        "clock",
    )  # fmt: skip

    def __init__(self, config: Config, clock: Callable[[], float] = time.monotonic) -> None:
        self._config = config
        #: the time source of the windows (a test moves it instead of waiting a minute)
        self.clock = clock
        #: (client, setting) -> [when its last line was written, refusals since then]
        self._pairs: dict[tuple[str, str], list[float]] = {}
        self._window_start = -WINDOW
        self._lines = 0  # lines written in this window
        self._overflow = 0  # refusals not told one by one (budget spent, or pair forgotten)
        self._overflow_clients: set[str] = set()  # bounded: only counted up to MAX_TRACKED

    def refused(self, client: str, setting: str, what: str, limit: str = "") -> None:
        """``client`` (its address) was refused ``what`` ("a stream", "a publish") by
        ``setting``; ``limit``: what the setting allows, if not one of the usual keys."""
        now = self.clock()
        key = (client, setting)
        pair = self._pairs.get(key)
        if pair is not None and now - pair[0] < WINDOW:
            pair[1] += 1
            return
        if now - self._window_start >= WINDOW:
            self._new_window(now)
        if self._lines >= LINES_PER_WINDOW:
            self._overflowed(client, 1)
            return
        more = int(pair[1]) if pair is not None else 0
        self._pairs.pop(key, None)  # re-inserted last: the dict stays oldest-first
        if len(self._pairs) >= MAX_TRACKED:
            self._forget_oldest()
        self._pairs[key] = [now, 0]
        self._lines += 1
        shown = shown_as(client)
        tail = f"; and {more} more since {_ago(pair[0], now)}" if more and pair else ""
        limit = limit or _limit(self._config, setting)
        log.warning(
            "turned away %s from %s by %s%s%s",
            what, shown, setting, f" ({limit})" if limit else "", tail,
            extra={"event": "refused", "client": shown, "setting": setting, "more": more},
        )  # fmt: skip

    def _new_window(self, now: float) -> None:
        if self._overflow:
            log.warning(
                "turned away %d more request(s) from %s%d client(s) not logged one by one "
                "(at most %d lines a minute)",
                self._overflow,
                "at least " if len(self._overflow_clients) >= MAX_TRACKED else "",
                len(self._overflow_clients), LINES_PER_WINDOW,
                extra={"event": "refused", "more": self._overflow},
            )  # fmt: skip
        self._window_start = now
        self._lines = 0
        self._overflow = 0
        self._overflow_clients.clear()

    def _overflowed(self, client: str, count: int) -> None:
        self._overflow += count
        if len(self._overflow_clients) < MAX_TRACKED:
            self._overflow_clients.add(client)

    def _forget_oldest(self) -> None:
        """Drop the oldest quarter of the pairs; their untold refusals join the overflow."""
        for key in list(self._pairs)[: MAX_TRACKED // 4]:
            untold = int(self._pairs.pop(key)[1])
            if untold:
                self._overflowed(key[0], untold)

    def tracked(self) -> int:
        """How many (address, setting) pairs are remembered: what ``MAX_TRACKED`` bounds."""
        return len(self._pairs)

    @staticmethod
    def proxy_headers(peer: str) -> None:
        """Proxy headers came from ``peer``, which is not in ``trusted_proxies``: warn once per
        process (the per-address limits then count every client behind it as one)."""
        global _proxy_warned
        if _proxy_warned:
            return
        _proxy_warned = True
        shown = shown_as(peer)
        log.warning(
            "a request from %s carries a proxy's header (X-Forwarded-For, Forwarded or "
            "X-Real-IP), but %s is not in trusted_proxies: the header is ignored. If a proxy is "
            "in front of the hub, every client behind it counts as %s for the per-address "
            "limits (subscribe_rate, max_client_streams, max_client_channels): list the proxy "
            "in trusted_proxies. (Warned once per process.)",
            shown, shown, shown,
            extra={"event": "untrusted_proxy", "client": shown},
        )  # fmt: skip


def _ago(then: float, now: float) -> str:
    """When ``then`` (monotonic) was, as wall-clock time of day."""
    return time.strftime("%H:%M:%S", time.localtime(time.time() - (now - then)))
