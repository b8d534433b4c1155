"""The HTTP connection layer under the routes: JSON for aiohttp's own errors, one short log line
for them, and no slot for slow or idle clients.

aiohttp answers requests it cannot parse (a 100 KB header, a NUL in the request line, a bad
header character) itself, before any route runs: in ``text/plain``, and with a log line at ERROR
holding the traceback and the raw request bytes, Authorization header included, about ten lines
per request that anyone can cause. ``_Handler.handle_error`` answers them as every other error,
``{"error": "..."}``, and logs one line that names the client and the kind of error, never the
bytes, at most ``LOG_BURST`` lines per ``LOG_WINDOW`` seconds (then one line saying how many were
left out).

Slow clients: aiohttp's keep-alive timer starts when a connection opens and again after each
answer, and closes the connection if no complete request has arrived when it fires. With it set
to ``idle_timeout``, a client that sends its headers a byte a second (slowloris), or sends
nothing, or sits idle between keep-alive requests, holds a connection for ``idle_timeout`` at
most. A body is bounded by ``body_timeout`` in the publish handler.

Making aiohttp use ``_Handler`` for its connections takes private API; that, and the lighter
request queue of each connection, live in ``hub.compat_aiohttp`` with their public-API
fallback: aiohttp's own handler, whose lines ``_ShortLines`` turns into the same short one.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import time
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web import RequestHandler

from hub.clients import ClientAddresses
from hub.compat_aiohttp import HandlerRunner

__all__ = [
    "LINE_BYTES_PER_CHANNEL",
    "LOG_BURST",
    "LOG_WINDOW",
    "HubRunner",
    "LogBudget",
    "handler_args",
    "request_line_limit",
]

log = logging.getLogger("hub.http")

LOG_BURST = 10
LOG_WINDOW = 60.0
#: Longest part of aiohttp's parser message sent back to the client (it may quote its bytes).
_MAX_DETAIL = 160


class LogBudget:
    """At most ``burst`` lines per ``window`` seconds; counts the ones left out."""

    def __init__(self, burst: int = LOG_BURST, window: float = LOG_WINDOW) -> None:
        self._burst = burst
        self._window = window
        self._started = -window
        self._used = 0
        self.left_out = 0

    def allow(self) -> bool:
        now = time.monotonic()
        if now - self._started >= self._window:
            self._started, self._used = now, 0
        if self._used < self._burst:
            self._used += 1
            return True
        self.left_out += 1
        return False


_budget = LogBudget()


def _detail(exc: BaseException | None) -> str:
    """The first line of aiohttp's message, short and printable (the client's own bytes)."""
    message = getattr(exc, "message", None) or (str(exc) if exc else "")
    first = str(message).strip().splitlines()[0] if str(message).strip() else ""
    first = first.encode("ascii", "backslashreplace").decode()
    return first[:_MAX_DETAIL]


class _Handler(RequestHandler):
    # RequestHandler has __slots__; without them here every connection would also carry a
    # __dict__ for this one attribute, memory paid per subscriber.
    __slots__ = ("addresses",)

    def __init__(self, manager: web.Server, addresses: ClientAddresses, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        #: the client address for the log line (trusted_proxies)
        self.addresses = addresses

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        kind = type(exc).__name__ if exc is not None else "error"
        if _budget.allow():
            left_out, _budget.left_out = _budget.left_out, 0
            more = f" ({left_out} more left out)" if left_out else ""
            # Never the exception's text or traceback for a bad request: it quotes raw bytes.
            args: tuple[Any, ...] = (status, kind, self.addresses.of(request) or "?", more)
            if status >= 500 and exc is not None:
                log.error("answered %d (%s) to %s%s", *args, exc_info=exc)
            else:
                log.warning("answered %d (%s) to %s%s", *args)
        if request.writer.output_size > 0:  # as aiohttp: too late for another response
            raise ConnectionError("a response was already started")
        if status >= 500:
            text = "internal error; the hub's log has the details"
        elif isinstance(exc, LineTooLong):
            status, text = _too_long(exc)
        else:
            detail = _detail(exc)
            text = "the request could not be read" + (f": {detail}" if detail else "")
        response = web.Response(
            status=status,
            body=orjson.dumps({"error": text}, None, orjson.OPT_APPEND_NEWLINE),
            headers={"Content-Type": "application/json"},
        )
        response.force_close()
        return response


class _ShortLines(logging.Filter):
    """For aiohttp's own handler (public API only, see ``hub.compat_aiohttp``): its line about
    a request it could not parse becomes ``_Handler``'s, one short line in the same budget,
    without the exception's text (it quotes the raw request) or a traceback. Other lines
    (a 500's traceback) pass as they are."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        status = getattr(exc, "code", None)
        if not isinstance(status, int) or not 400 <= status < 500:
            return True
        if not _budget.allow():
            return False
        left_out, _budget.left_out = _budget.left_out, 0
        more = f" ({left_out} more left out)" if left_out else ""
        peer = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        peer = peer if isinstance(peer, str) and _is_address(peer) else "?"
        record.msg, record.args = (
            "answered %d (%s) to %s%s",
            (status, type(exc).__name__, peer, more),
        )
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info, record.exc_text = None, None
        return True


def _is_address(text: str) -> bool:
    """Only an IP address goes into the line (aiohttp's message could change to quote more)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


#: aiohttp's handler option ``logger`` when it is aiohttp's own handler that runs.
_fallback_log = logging.getLogger("hub.http.aiohttp")
_fallback_log.addFilter(_ShortLines())


class HubRunner(HandlerRunner):
    """An ``AppRunner`` whose connections are ``_Handler``s (``hub.compat_aiohttp``), or, on
    aiohttp's public API only, its own handler logging through ``_ShortLines``."""

    def __init__(self, app: web.Application, addresses: ClientAddresses, **kwargs: Any) -> None:
        handler = functools.partial(_Handler, addresses=addresses)
        super().__init__(app, handler, {"logger": _fallback_log}, **kwargs)


#: Request-line bytes allowed per channel a stream may name: a 200-character name with its
#: ``channel=`` and ``&`` is 209, so ``max_stream_channels`` channels of any length fit.
LINE_BYTES_PER_CHANNEL = 256
#: aiohttp's default line limit, kept as the least (and for every header line).
_MIN_LINE = 8190


def request_line_limit(max_stream_channels: int) -> int:
    """The longest request line taken: room for a stream of ``max_stream_channels`` channels
    (``/events?channel=...&channel=...``), so such a URL meets the handler's own checks rather
    than the parser's."""
    return max(_MIN_LINE, LINE_BYTES_PER_CHANNEL * max_stream_channels)


def _too_long(exc: LineTooLong) -> tuple[int, str]:
    """414 for the request line (a URL naming many channels), 431 for a header; the limit
    named, never the bytes (aiohttp's message is a Python repr of them)."""
    line, limit = exc.args[0], exc.args[1]
    head = line[:1] if isinstance(line, bytes | bytearray | str) else ""
    if head in (b"/", "/", b"h", "h", b"*", "*"):  # a path, an absolute URL, OPTIONS *
        return 414, (
            f"the request line is longer than {limit} bytes, the limit set by "
            f"max_stream_channels ({LINE_BYTES_PER_CHANNEL} bytes a channel): name fewer "
            "channels in one stream, or raise max_stream_channels"
        )
    return 431, f"a request header is longer than {limit} bytes: send a shorter one"


def handler_args(idle_timeout: float, max_stream_channels: int = 100) -> dict[str, Any]:
    """Connection options for ``web.Application(handler_args=...)``: every runner of the app
    (the hub's, a test server's) closes connections without a complete request in time, and
    takes a request line long enough for ``max_stream_channels`` channels."""
    return {
        "keepalive_timeout": idle_timeout,
        "max_line_size": request_line_limit(max_stream_channels),
    }
