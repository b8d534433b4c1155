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
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler

from hub.clients import ClientAddresses

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


class _Pipeline(list[Any]):
    """The queue of parsed requests waiting on a connection, as a list rather than a deque.

    A deque allocates a 64-slot block up front, 760 bytes held by every connection for its whole
    life (so by every idle subscriber), when a connection almost never holds more than one
    request; a list starts at 56 bytes, and ``pop(0)`` of a few items costs nothing.
    """

    __slots__ = ()

    def popleft(self) -> Any:
        return self.pop(0)


class _Handler(RequestHandler):
    # RequestHandler has __slots__; without them here every connection would also carry a
    # __dict__ for this one attribute, memory paid per subscriber.
    __slots__ = ("addresses",)

    def __init__(self, manager: web.Server, addresses: ClientAddresses, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        #: the client address for the log line (trusted_proxies)
        self.addresses = addresses
        # A private attribute: the aiohttp minor is pinned in pyproject.toml, and
        # tests/test_protocol_queue.py fails if aiohttp uses its queue in a way a list does not
        # support.
        self._messages = _Pipeline()  # type: ignore[assignment]

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


class _Server(web.Server):
    addresses = ClientAddresses(())

    def __call__(self) -> RequestHandler:
        return _Handler(self, self.addresses, loop=self._loop, **self._kwargs)


class HubRunner(web.AppRunner):
    """An ``AppRunner`` whose connections are ``_Handler``s, with the same options."""

    def __init__(self, app: web.Application, addresses: ClientAddresses, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._addresses = addresses

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        # The same server with another handler class: its handler and factory are public
        # attributes, its handler options (``_kwargs``) are what AppRunner and the app gave it.
        server = _Server(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            loop=asyncio.get_running_loop(),
            **made._kwargs,
        )
        server.addresses = self._addresses
        return server


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
