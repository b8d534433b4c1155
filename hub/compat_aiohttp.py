"""Every touch of aiohttp's private API, each with a public-API fallback.

The hub's connections are a subclass of ``web.RequestHandler`` (``hub.protocol._Handler``: a
request aiohttp cannot parse gets a JSON answer and one short log line, never the raw bytes).
aiohttp has no public way to pick the handler class of an ``AppRunner``, so ``HandlerRunner``
takes it from private API:

- ``AppRunner._make_server`` (overridden: the server aiohttp built, re-made with our class), and
- ``web.Server._kwargs`` (read once per runner: the handler options the app and runner set).

``handler_swap_fits()`` checks their shape before any of it is used; if it does not fit, or
``SSEHUB_PUBLIC_API_ONLY`` is set (``1``/``all``, or a comma list naming ``handler``), the
runner keeps aiohttp's own ``RequestHandler`` and passes the ``fallback`` options (public,
documented handler options: ``hub.protocol`` gives a ``logger`` that writes the same one short
budgeted line). What is lost then is only the JSON body of those 400s: aiohttp answers in
``text/plain``. One INFO line at start says so. tests/test_compat_aiohttp.py asserts the shape
on the installed aiohttp (so an upgrade that breaks it fails CI) and runs a real hub both ways.

What it costs (not a saving but a behaviour; same-run A/B, ``python -m bench.ab --base .
--base-env SSEHUB_PUBLIC_API_ONLY=handler --scenarios idle,publish --repeat 3``): idle RSS per
subscriber and publish req/s within the run-to-run spread (figures in ``bench/README.md``).

Dropped (measured 2026-12, same run, below the 3 % bar): replacing the connection's request
queue (``RequestHandler._messages``, a deque) by a list. See ``bench/README.md``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

__all__ = [
    "PUBLIC_API_ONLY_ENV",
    "HandlerRunner",
    "handler_swap_fits",
    "lighter_queue",
    "public_api_only",
]

log = logging.getLogger("hub.http")

#: Set to ``1``/``all`` (every trick) or a comma list of trick names (``handler``) to run on
#: aiohttp's public API only: the fallback path, for tests and same-run A/B figures.
PUBLIC_API_ONLY_ENV = "SSEHUB_PUBLIC_API_ONLY"

#: A factory of connections: ``(server, loop=..., **handler options) -> RequestHandler``.
HandlerFactory = Callable[..., web.RequestHandler]


def public_api_only(trick: str) -> bool:
    """Whether the environment asks for the public-API path of ``trick``."""
    value = os.environ.get(PUBLIC_API_ONLY_ENV, "").strip().lower()
    if value in ("", "0", "no", "false"):
        return False
    return value in ("1", "all", "yes", "true") or trick in {v.strip() for v in value.split(",")}


def handler_swap_fits() -> bool:
    """Whether this aiohttp has the private parts ``HandlerRunner`` uses, in the shape it
    expects: an async ``AppRunner._make_server()`` and a ``web.Server`` that keeps its handler
    options in ``self._kwargs`` (a dict, read in ``__init__``)."""
    make = getattr(web.AppRunner, "_make_server", None)
    if make is None or not inspect.iscoroutinefunction(make):
        return False
    if len(inspect.signature(make).parameters) != 1:  # self only
        return False
    init = getattr(web.Server.__init__, "__code__", None)
    return init is not None and "_kwargs" in init.co_names and "kwargs" in init.co_varnames


class _Server(web.Server):
    """The server aiohttp made, with ``handler`` as its connection class (``__call__`` is the
    public protocol factory every ``web.Server`` is)."""

    def __init__(self, made: web.Server, handler: HandlerFactory, options: dict[str, Any]) -> None:
        self._loop_of_handlers = asyncio.get_running_loop()
        super().__init__(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            loop=self._loop_of_handlers,
            **options,
        )
        self._handler = handler
        self._options = dict(options)

    def __call__(self) -> web.RequestHandler:
        return self._handler(self, loop=self._loop_of_handlers, **self._options)


class HandlerRunner(web.AppRunner):
    """An ``AppRunner`` whose connections are made by ``handler`` (a ``web.RequestHandler``
    subclass), or aiohttp's own ``RequestHandler`` with ``fallback`` options added when the
    private API does not fit or is switched off (``swapped`` says which)."""

    def __init__(
        self,
        app: web.Application,
        handler: HandlerFactory,
        fallback: Mapping[str, Any],
        **kwargs: Any,
    ) -> None:
        self.swapped = not public_api_only("handler") and handler_swap_fits()
        if not self.swapped:
            log.info(
                "aiohttp's own connection handler (public API only): requests it cannot"
                " parse are answered in text/plain"
            )
            kwargs = {**kwargs, **fallback}
        super().__init__(app, **kwargs)
        self._handler = handler

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        # private: the handler options the app (handler_args) and this runner gave the server
        options = getattr(made, "_kwargs", None) if self.swapped else None
        if not isinstance(options, dict):
            return made
        return _Server(made, self._handler, options)


class _Pipeline(list[Any]):
    """The queue of parsed requests waiting on a connection, as a list rather than a deque."""

    __slots__ = ()

    def popleft(self) -> Any:
        return self.pop(0)


def lighter_queue(handler: web.RequestHandler) -> None:
    """Replace the connection's (empty) request deque by a list (``_messages``, private)."""
    if public_api_only("pipeline"):
        return
    queue = getattr(handler, "_messages", None)
    if type(queue) is deque and not queue:
        handler._messages = _Pipeline()  # type: ignore[assignment]
