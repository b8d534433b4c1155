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
``text/plain``. One INFO line at start says so. tests/wire/test_compat_aiohttp.py asserts the shape
on the installed aiohttp (so an upgrade that breaks it fails CI) and runs a real hub both ways.

Each connection's queue of parsed requests (``RequestHandler._messages``, a deque of 760 bytes)
is replaced by a list (``HandlerRunner.lighter``): memory per idle subscriber. ``queue_swap_fits()``
reads aiohttp's source once per process and allows it only if aiohttp uses the queue in ways the
list supports; otherwise (or with ``pipeline`` in ``SSEHUB_PUBLIC_API_ONLY``) the deque stays.

Same-run A/B figures (``python -m bench.ab``: a fresh hub per run, runs interleaved; 10,000
idle subscribers on one channel, RSS growth per subscriber; 2026-12-07, 2-core shared machine):

- the lighter queue (``HandlerRunner.lighter``, ``RequestHandler._messages``; 3 runs each,
  ``--base . --base-env SSEHUB_PUBLIC_API_ONLY=pipeline --scenarios idle --idle-sizes 10000
  --repeat 3``): 9.66 KiB with it, 10.41 KiB without, ratio 0.928 [0.928-0.930], run-to-run
  spread 0.3 % (an earlier run, 4 each: 0.935 [0.933-0.937]): 7 % saved, so it stays (the bar
  is 3 %).
- the handler class (``HandlerRunner``; 3 runs each, both without the lighter queue, ``--base-env
  SSEHUB_PUBLIC_API_ONLY=1 --head-env SSEHUB_PUBLIC_API_ONLY=pipeline --scenarios idle,publish``):
  10.41 vs 10.41 KiB per idle subscriber (ratio 1.000); publish rates within their spread (which
  was 80-200 % on the busy machine). It is a behaviour (the JSON 400 and its log line), not a
  saving, and no per-request code path differs.
"""

from __future__ import annotations

import ast
import asyncio
import functools
import inspect
import logging
import os
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web, web_protocol

__all__ = [
    "PUBLIC_API_ONLY_ENV",
    "HandlerRunner",
    "handler_swap_fits",
    "public_api_only",
    "queue_swap_fits",
    "uses_of_the_queue",
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
    public protocol factory every ``web.Server`` is), and the lighter queue if ``lighter``."""

    def __init__(
        self, made: web.Server, handler: HandlerFactory, options: dict[str, Any], lighter: bool
    ) -> None:
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
        self._lighter = lighter

    def __call__(self) -> web.RequestHandler:
        connection = self._handler(self, loop=self._loop_of_handlers, **self._options)
        if self._lighter:
            _lighter_queue(connection)
        return connection


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
        #: whether connections get the lighter request queue (reads aiohttp's source, ~10 ms)
        self.lighter = self.swapped and not public_api_only("pipeline") and queue_swap_fits()

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        # private: the handler options the app (handler_args) and this runner gave the server
        options = getattr(made, "_kwargs", None) if self.swapped else None
        if not isinstance(options, dict):
            return made
        return _Server(made, self._handler, options, self.lighter)


class _Pipeline(list[Any]):
    """The queue of parsed requests waiting on a connection, as a list rather than a deque:
    a deque allocates a 64-slot block up front (760 bytes, held by every connection for its
    whole life, so by every idle subscriber) when a connection almost never holds more than one
    request; a list starts at 56 bytes, and ``pop(0)`` of a few items costs nothing."""

    __slots__ = ()

    def popleft(self) -> Any:
        return self.pop(0)


#: How aiohttp may use its queue besides calling methods the list has: ``len()``, a truth test.
_READS = (ast.UnaryOp, ast.BoolOp, ast.If, ast.While, ast.Compare, ast.IfExp, ast.Assert)


def uses_of_the_queue() -> list[tuple[int, str]]:
    """Every use of ``self._messages`` in aiohttp's connection handler, as (line, how): a
    method name (``.append``), ``len()``, ``truth``, ``assigned`` or ``? <node>`` (anything
    else). Empty if the source cannot be read."""
    try:
        tree = ast.parse(inspect.getsource(web_protocol))
    except (OSError, TypeError, SyntaxError):
        return []
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    uses = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and node.attr == "_messages"):
            continue
        parent = parents[node]
        if isinstance(parent, ast.Attribute):
            uses.append((node.lineno, f".{parent.attr}"))
        elif isinstance(parent, ast.Call) and getattr(parent.func, "id", None) == "len":
            uses.append((node.lineno, "len()"))
        elif isinstance(parent, ast.AnnAssign | ast.Assign) and node is not parent.value:
            uses.append((node.lineno, "assigned"))
        elif isinstance(parent, _READS):
            uses.append((node.lineno, "truth"))
        else:
            uses.append((node.lineno, f"? {type(parent).__name__}"))
    return uses


@functools.cache
def queue_swap_fits() -> bool:
    """Whether aiohttp keeps its queue in ``_messages`` (assigned, a deque in a fresh handler)
    and uses it only as ``_Pipeline`` allows: methods the list has, ``len()``, truth tests
    (read from aiohttp's source once per process, ~10 ms)."""
    uses = uses_of_the_queue()
    if not any(how == "assigned" for _, how in uses):
        return False
    allowed = ("len()", "truth", "assigned")
    return all(
        hasattr(_Pipeline, how[1:]) if how.startswith(".") else how in allowed for _, how in uses
    )


def _lighter_queue(connection: web.RequestHandler) -> None:
    """Replace a new connection's (empty) request deque by a ``_Pipeline`` (``_messages``,
    private; the caller checked ``queue_swap_fits()``)."""
    queue = getattr(connection, "_messages", None)
    if type(queue) is deque and not queue:
        connection._messages = _Pipeline()  # type: ignore[assignment]
