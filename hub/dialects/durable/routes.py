"""``/v1/stream/{path}``: one handler per method, the checks every request shares, and the CORS
preflight.

Every request: the channel (the path, URL-decoded, a channel name: else 400), the backplane
(501 naming it when it has no ``Streams``), then the method's module: ``writes`` (PUT, POST,
DELETE: publish auth), ``reads`` (HEAD, GET: what a subscribe needs), ``live`` (GET with
``live=sse`` or ``live=long-poll``). Whatever they raise becomes a JSON error with the answer's
headers: ``InvalidInput`` its status, an unavailable backplane ``503``, a full one ``503`` with a
longer ``Retry-After``; no other exception is expected, so none becomes a 500 by design.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from hub.api.publishers import Publishers, retry_after
from hub.api.responses import allowed_origin
from hub.api.subscribe import Wiring
from hub.backplane import Backplane, BackplaneFull, BackplaneUnavailable, ChannelDeleted
from hub.backplane.registry import scheme_of
from hub.backplane.streams import Streams
from hub.clients import ClientAddresses
from hub.dialects.durable import live, reads, writes
from hub.dialects.durable.context import SECURITY, Context, fail, headers_for
from hub.dialects.durable.wire import Wire
from hub.events import InvalidInput
from hub.grants import Gate

__all__ = ["DURABLE_PATH", "add_durable_routes"]

#: ``[\s\S]+``: a stream's path holds "/"; any other character reaches ``check_channel``.
DURABLE_PATH = r"/v1/stream/{path:[\s\S]+}"
_READ_HEADERS = "Authorization, If-None-Match, Accept, Cache-Control"
_WRITE_HEADERS = (
    "Authorization, Content-Type, Stream-Seq, Stream-TTL, Stream-Expires-At, Stream-Closed, "
    "Producer-Id, Producer-Epoch, Producer-Seq"
)

Method = Callable[[Context, web.Request, str, dict[str, str]], Awaitable[web.StreamResponse]]


async def _get(
    ctx: Context, request: web.Request, channel: str, headers: dict[str, str]
) -> web.StreamResponse:
    assert ctx.streams is not None
    deadline = await ctx.may_read(request, channel)
    state = await ctx.streams.stream_state(channel, touch=True)  # a read restarts a TTL
    if state is None:
        return fail(404, f"no stream at {channel!r}", headers)
    mode = request.query.get("live")
    if mode == "sse":
        return await live.sse(ctx, request, channel, state, headers, deadline)
    if mode == "long-poll":
        return await live.long_poll(ctx, request, channel, state, headers, deadline)
    if mode is not None:
        return fail(400, f"live={mode[:40]!r}: use sse or long-poll, or no live", headers)
    return await reads.catch_up(ctx, request, channel, state, headers)


_METHODS: dict[str, Method] = {
    "GET": _get,
    "HEAD": reads.head,
    "PUT": writes.create,
    "POST": writes.append,
    "DELETE": writes.delete,
}


def _handler(ctx: Context) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    config = ctx.config
    method_of = _METHODS

    async def handle(request: web.Request) -> web.StreamResponse:
        headers = headers_for(config, request)
        if ctx.streams is None:
            return fail(
                501,
                f"the {ctx.backplane} backplane does not serve Durable Streams: use one that "
                "does (memory, redis, nats)",
                headers,
            )
        try:
            channel = ctx.channel(request)
            return await method_of[request.method](ctx, request, channel, headers)
        except InvalidInput as problem:
            response = fail(problem.status, str(problem), headers, retry_after(problem))
            if problem.status in (408, 413):  # a body still on its way: do not read the rest
                response.force_close()
            return response
        except BackplaneUnavailable as problem:
            return fail(503, f"the backplane is unavailable: {problem}", headers, _AGAIN)
        except BackplaneFull as problem:
            return fail(503, f"the backplane is full: {problem}", headers, {"Retry-After": "5"})
        except ChannelDeleted as problem:  # (a stream's channel deleted natively meanwhile)
            return fail(404, f"no stream: {problem}", headers)

    return handle


_AGAIN = {"Retry-After": "1"}


def _preflight(ctx: Context) -> Callable[[web.Request], Awaitable[web.Response]]:
    config = ctx.config

    async def preflight(request: web.Request) -> web.Response:
        method = request.headers.get("Access-Control-Request-Method", "GET").upper()
        reading = method in ("GET", "HEAD")
        origins = config.cors_origins if reading else config.publish_cors_origins
        headers = allowed_origin(request, origins)
        if headers:
            headers |= {
                "Access-Control-Allow-Methods": method if method in _METHODS else "GET",
                "Access-Control-Allow-Headers": _READ_HEADERS if reading else _WRITE_HEADERS,
                "Access-Control-Max-Age": "86400",
            }
        return web.Response(status=204, headers=headers | SECURITY)

    return preflight


def add_durable_routes(
    app: web.Application,
    wired: Wiring,
    gate: Gate | None,
    publishers: Publishers,
    backplane: Backplane,
) -> None:
    hub, config, metrics, refusals, admission = wired
    ctx = Context(
        hub=hub,
        config=config,
        metrics=metrics,
        refusals=refusals,
        streams=backplane if isinstance(backplane, Streams) else None,
        backplane=scheme_of(config.backplane) or config.backplane,
        gate=gate if gate is not None and gate.private is not None else None,
        publishers=publishers,
        wire=Wire(),
        addresses=ClientAddresses(config.trusted_proxies, config.limits_per_address),
        admission=admission,
    )
    handle = _handler(ctx)
    for method in _METHODS:
        app.router.add_route(method, DURABLE_PATH, handle)
    app.router.add_route("OPTIONS", DURABLE_PATH, _preflight(ctx))
