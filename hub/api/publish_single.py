"""The fast path of the hottest request: one event POSTed to ``/channels/{name}/events``.

Why it exists: with nothing else to do, a single publish's own work in the hub was some 28
Python calls (the token or loopback check, the body's and the fields' checks, the draft, the
store, the receipt; each ~1,500-2,000 instructions on Python 3.11): 1.26x a bare aiohttp
handler's instructions per request, issue 22 asks for 1.11x (docs/performance.md, "Counted in
instructions"). Here the common case (one
JSON event that is not a string, no idempotency key, no tags, a channel that has a history, a
backplane that stores without awaiting: ``Hub.publish_now``) is one function and a handful of
calls.

What it must stay equal to: ``publish_channel`` (``hub.api.publish``) for every request: the
same checks in the same order, the same errors (status and JSON message), the same ids,
history, fan-out, limits and metrics. It keeps so by doing inline only the checks whose outcome
is "passes", and handing every other case to the general path's own code:

- before the body is taken (an ``Idempotency-Key``, a ``Content-Type`` other than exactly
  ``application/json``, a body still arriving): the general handler takes the whole request;
- after it is parsed (not a JSON object of ``event`` and ``data`` only, string data, an event
  name not seen valid, data over ``max_event_bytes`` or nested too deeply, a clock channel, a
  store that cannot take it now): ``finish``, the general path from the parsed body on, which
  raises its own error or publishes as ever.

The token or loopback check (a loopback client's request without a proxy's header or an
``Origin`` passes inline, as ``check_publisher`` would let it), the rate, the channel's name
and the body's size and JSON are the general path's own functions, called in its order.
``publish_single`` is used only where every check it skips cannot apply: no scoped tokens, no
``presence`` patterns, no ``publish_cors_origins`` (whose answers carry CORS headers).
tests/publish/test_publish_fast.py holds the two paths to the same answers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from orjson import OPT_APPEND_NEWLINE, JSONDecodeError, JSONEncodeError, dumps, loads

from hub.api.publish_body import body_too_large, parse
from hub.api.publishers import retry_after
from hub.api.responses import JSON_HEADERS, Handler, answer, cors_headers
from hub.auth import check_publisher, is_loopback_address
from hub.clients import PROXY_HEADERS
from hub.config import Config
from hub.events import InvalidInput, check_channel, is_event_name
from hub.hub import Hub
from hub.ticker import CLOCK_PREFIX

__all__ = ["Finish", "Spend", "single_publisher"]

#: The general path from a parsed body on: (request, body, channel, token) -> its answer.
Finish = Callable[[web.Request, Any, str, "str | None"], Awaitable[web.Response]]
#: ``Publishers.spend``: a publish rate's check (429), None without any rate.
Spend = Callable[[web.Request, "str | None", int], Awaitable[None]]

#: The fields of the fast case (``tags`` take the general path).
_PLAIN = frozenset({"event", "data"})
#: Headers that leave a loopback client's request for ``check_publisher`` to judge: a proxy's
#: (then it is no loopback client), a web page's ``Origin``.
_JUDGED = (*PROXY_HEADERS, "Origin")


def single_publisher(
    hub: Hub, config: Config, spend: Spend | None, general: Handler, finish: Finish
) -> Handler:
    """The handler of a single publish: ``publish_single`` where the hub can take it (see the
    module's docstring), else ``general`` itself."""
    if not hub.publishes_now or config.presence or config.publish_cors_origins:
        return general
    tokens = config.publish_tokens
    max_body = config.max_body_bytes
    max_event = config.max_event_bytes
    publish_now = hub.publish_now

    async def publish_single(request: web.Request) -> web.StreamResponse:
        headers = request.headers
        content = request.content
        if (
            "Idempotency-Key" in headers
            or headers.get("Content-Type") != "application/json"
            or not content.is_eof()
        ):
            return await general(request)
        try:
            # check_publisher()'s answer for a loopback client without tokens, a proxy or an
            # Origin, without the call; any other request is checked by it
            plain = not tokens and is_loopback_address(request.remote)
            for name in _JUDGED:
                plain = plain and name not in headers
            token = None if plain else check_publisher(request, tokens, ())
            if spend is not None:
                await spend(request, token, 1)
            channel = check_channel(request.match_info["name"])
            body = content.read_nowait()
            if len(body) > max_body:
                raise body_too_large(config)
            try:
                item = loads(body)
            except JSONDecodeError:
                item = parse(body)  # raises the general path's error
            if (
                type(item) is not dict
                or not _PLAIN.issuperset(item)
                or "data" not in item
                or channel.startswith(CLOCK_PREFIX)
            ):
                return await finish(request, item, channel, token)
            event = item.get("event", "message")
            data = item["data"]
            if type(data) is str or type(event) is not str or not is_event_name(event):
                return await finish(request, item, channel, token)
            try:
                encoded = dumps(data)  # no line break in it: JSON escapes them in strings
            except JSONEncodeError:  # nested too deeply: the general path says so
                return await finish(request, item, channel, token)
            if len(encoded) > max_event:
                return await finish(request, item, channel, token)
            # sse.encode_line(), inlined (the event name is checked: no line break either)
            if event == "message":
                framed = b"data: " + encoded + b"\n\n"
            else:
                framed = b"".join((b"event: ", event.encode(), b"\ndata: ", encoded, b"\n\n"))
            published = publish_now(channel, framed)
            if published is None:
                return await finish(request, item, channel, token)
        except InvalidInput as problem:
            return answer(problem, cors_headers(config, request) | retry_after(problem))
        receipt = {"id": published[0], "channel": channel, "subscribers": published[1]}
        body = dumps(receipt, None, OPT_APPEND_NEWLINE)
        return web.Response(status=202, body=body, headers=JSON_HEADERS)

    return publish_single
