"""HTTP handlers: subscribe (event streams), publish, and introspection.

Every error is JSON ``{"error": "..."}`` with a fitting status, except where an ``EventSource``
is listening: a browser gives up for good on any answer but ``200 text/event-stream``, so a hub
at capacity answers 200 with a jittered ``retry:`` and ends the stream instead.
"""

from __future__ import annotations

import functools
import random
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp_sse import EventSourceResponse

from hub import auth, sse
from hub.backplane import BackplaneFull, BackplaneUnavailable
from hub.config import Config
from hub.events import (
    InvalidInput,
    check_channel,
    check_event_name,
    encode_draft,
)
from hub.hub import AtCapacity, Hub
from hub.metrics import Metrics
from hub.ticker import check_timezone, clock_channel, is_clock, parse_clock, timezones

__all__ = ["HUB", "METRICS", "STARTED", "add_fallback", "add_routes", "error", "json_errors"]

HUB = web.AppKey("hub", Hub)
METRICS = web.AppKey("metrics", Metrics)
STARTED = web.AppKey("started", float)

_SINGLE_FIELDS = frozenset({"event", "data"})
_BATCH_FIELDS = frozenset({"channel", "event", "data"})
_MAX_IDEMPOTENCY_KEY = 200


def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return _json({"error": message}, status, headers)


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # The header given as such: aiohttp's content_type= parses and rebuilds it every time.
    return web.Response(
        status=status,
        body=orjson.dumps(data),
        headers={"Content-Type": "application/json", **headers} if headers else _JSON_HEADERS,
    )


_JSON_HEADERS = {"Content-Type": "application/json"}


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_errors(handler: Handler) -> Handler:
    """Answer ``InvalidInput`` raised by a short request's handler as a JSON error.

    A decorator rather than a middleware: a middleware's frame would stay alive for the whole
    life of every event stream, which is memory paid per subscriber.
    """

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except InvalidInput as problem:
            return error(problem.status, str(problem), _cors_headers(request))

    return wrapper


async def fallback(request: web.Request) -> web.Response:
    """JSON 404 and 405 for requests no route takes (the last route: it matches everything)."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is not request.match_info.route.resource:
            allowed |= (await resource.resolve(request))[1]
    if allowed:
        return error(
            405,
            f"method {request.method} is not allowed here; allowed: {', '.join(sorted(allowed))}",
            {"Allow": ", ".join(sorted(allowed))},
        )
    return error(404, f"nothing at {request.path}; see the API in the README")


# -- CORS ------------------------------------------------------------------------------------


def _allowed_origin(request: web.Request, origins: tuple[str, ...]) -> dict[str, str]:
    origin = request.headers.get("Origin")
    if "*" in origins:
        return {"Access-Control-Allow-Origin": "*"}
    if origin is not None and origin in origins:
        # A credentialed EventSource needs the exact origin echoed, never "*".
        return {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Credentials": "true",
            "Vary": "Origin",
        }
    return {}


def _cors_headers(request: web.Request) -> dict[str, str]:
    config = request.app[HUB].config
    origins = config.cors_origins if request.method == "GET" else config.publish_cors_origins
    return _allowed_origin(request, origins)


async def preflight(request: web.Request) -> web.Response:
    """Answer CORS preflights; subscribe and publish have separate origin lists."""
    config = request.app[HUB].config
    method = request.headers.get("Access-Control-Request-Method", "GET").upper()
    if method == "POST":
        headers = _allowed_origin(request, config.publish_cors_origins)
        allow = "Authorization, Content-Type, Idempotency-Key"
    else:
        headers = _allowed_origin(request, config.cors_origins)
        # fetch-based EventSource polyfills send Last-Event-ID as a real header
        allow = "Last-Event-ID, Cache-Control, Accept"
    if headers:
        headers |= {
            "Access-Control-Allow-Methods": method if method in ("GET", "POST") else "GET",
            "Access-Control-Allow-Headers": allow,
            "Access-Control-Max-Age": "86400",
        }
    return web.Response(status=204, headers=headers)


# -- subscribe -------------------------------------------------------------------------------


class _StreamResponse(EventSourceResponse):
    """aiohttp-sse's response (its headers, chunked encoding) without its per-connection costs.

    aiohttp-sse starts a ping task per connection; the hub sends heartbeats to every stream from
    one timer instead. It also keeps the socket to restore TCP_USER_TIMEOUT at the end; the hub
    sets the option and keeps nothing, since what an idle stream holds is paid per subscriber.
    """

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:
            return self._payload_writer
        _abort_when_unacknowledged(request, self._send_timeout)
        return await web.StreamResponse.prepare(self, request)


def _abort_when_unacknowledged(request: web.BaseRequest, seconds: float | None) -> None:
    """Have the kernel drop a connection whose data goes unacknowledged for ``seconds``.

    A vanished peer is then noticed at the next heartbeat instead of after ~15 minutes of
    retransmissions (Linux only; elsewhere a no-op).
    """
    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if option is None or seconds is None or sock is None:
        return
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, option, int(seconds * 1000))


def _check_stream_channels(config: Config, names: list[str]) -> list[str]:
    if not names:
        raise InvalidInput("name at least one channel: /events?channel=a&channel=b")
    unique = list(dict.fromkeys(check_channel(name) for name in names))
    if len(unique) > config.max_stream_channels:
        raise InvalidInput(
            f"{len(unique)} channels on one stream; the limit (max_stream_channels) is "
            f"{config.max_stream_channels}"
        )
    declared = {clock_channel(c.timezone, c.interval) for c in config.clocks}
    for name in unique:
        if is_clock(name):
            parse_clock(name)
            if not config.clocks_on_demand and name not in declared:
                raise InvalidInput(
                    f"clock channel {name!r} is not declared in clocks, and clocks_on_demand is "
                    "off",
                    status=404,
                )
    return unique


def _refuse(request: web.Request, hub: Hub, why: str = "the hub is at capacity") -> web.Response:
    """Turn a subscriber away without making its EventSource give up: 200, retry later."""
    hub.metrics.subscribers_refused += 1
    delay = int(hub.config.retry * random.uniform(1.0, 3.0)) + random.randint(0, 1000)
    return web.Response(
        body=sse.retry(delay) + sse.comment(f"{why}; retry later"),
        content_type="text/event-stream",
        headers={"Cache-Control": "no-cache", **_cors_headers(request)},
    )


def stream_handler(names_of: Callable[[web.Request], list[str]]) -> Handler:
    """A subscribe handler: ``names_of`` says which channels a request asks for."""

    async def stream(request: web.Request) -> web.StreamResponse:
        # Everything a stream needs lives in this one frame for the stream's whole life.
        hub = request.app[HUB]
        try:
            channels = _check_stream_channels(hub.config, names_of(request))
            start = request.query.get("from")
            if start not in (None, "start"):
                raise InvalidInput(f"from={start!r} is not understood; use from=start")
        except InvalidInput as problem:
            return error(problem.status, str(problem), _cors_headers(request))
        last_event_id = request.headers.get("Last-Event-ID") or request.query.get("lastEventId")
        try:
            subscriber = hub.open(channels)
        except AtCapacity:
            return _refuse(request, hub)
        response = _StreamResponse(headers=_cors_headers(request))
        try:
            # History and the live feed are settled before the response headers go out, so
            # whatever is published once a client sees them reaches it.
            try:
                head = await hub.replay(subscriber, last_event_id or None, start == "start")
            except BackplaneUnavailable:
                # 200 + retry: the browser tries again (with its Last-Event-ID) a little later.
                return _refuse(request, hub, "the backplane is unavailable")
            writer = await response.prepare(request)
            await response.write(head)
            transport = request.transport
            if transport is None:
                return response
            hub.attach(subscriber, transport, bool(getattr(writer, "chunked", True)))
            await subscriber.done
        except ConnectionResetError:
            pass  # the client left while the stream was being set up
        finally:
            hub.close(subscriber)
        return response

    return stream


def _one_channel(request: web.Request) -> list[str]:
    return [request.match_info["name"]]


def _many_channels(request: web.Request) -> list[str]:
    return request.query.getall("channel", [])


def _clock_of_query(request: web.Request) -> list[str]:
    """The original design's URL: /event-stream?city=<IANA timezone>&sec=<interval>."""
    city = request.query.get("city")
    if not city:
        raise InvalidInput("city is required: /event-stream?city=Asia/Kolkata&sec=5")
    return [clock_channel(check_timezone(city), int(_seconds(request)))]


def _seconds(request: web.Request) -> str:
    seconds = request.query.get("sec", "1")
    if not seconds.isascii() or not seconds.isdigit():
        raise InvalidInput(f"sec={seconds!r}: use whole seconds from 1 to 3600")
    return seconds


# -- publish ---------------------------------------------------------------------------------


async def _read_json(request: web.Request) -> Any:
    config = request.app[HUB].config
    given = request.headers.get("Content-Type", "")
    if given.partition(";")[0].strip().lower() != "application/json":
        raise InvalidInput(
            f"Content-Type must be application/json, not {request.content_type!r}", status=415
        )
    if request.content_length is not None and request.content_length > config.max_body_bytes:
        raise _body_too_large(config)
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _body_too_large(config) from None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as problem:
        raise InvalidInput(f"the body is not valid JSON: {problem}") from None


def _body_too_large(config: Config) -> InvalidInput:
    return InvalidInput(
        f"the body is larger than max_body_bytes ({config.max_body_bytes})", status=413
    )


def _idempotency_key(request: web.Request, scope: str) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= _MAX_IDEMPOTENCY_KEY or not key.isascii() or not key.isprintable():
        raise InvalidInput(
            f"Idempotency-Key must be 1-{_MAX_IDEMPOTENCY_KEY} printable ASCII characters"
        )
    return f"{len(scope)}:{scope}:{key}"  # keys are per channel (scope "" for batches)


def _draft_of(item: Any, channel: str, fields: frozenset[str], where: str, config: Config) -> Any:
    if not isinstance(item, dict):
        raise InvalidInput(f"{where}must be a JSON object")
    if not fields.issuperset(item):
        unknown = sorted(set(item) - fields)
        allowed = ", ".join(sorted(fields))
        raise InvalidInput(f"{where}unknown field {unknown[0]!r}; allowed: {allowed}")
    if "data" not in item:
        raise InvalidInput(f"{where}data is required")
    if is_clock(channel):
        raise InvalidInput(f"{where}{channel!r} is a clock channel: only its ticker writes it")
    event = check_event_name(item.get("event", "message"))
    try:
        return encode_draft(channel, event, item["data"], config.max_event_bytes)
    except InvalidInput as problem:
        raise InvalidInput(f"{where}{problem}", problem.status) from None


async def _publish(
    request: web.Request, drafts: list[Any], scope: str, single: bool
) -> web.Response:
    hub = request.app[HUB]
    key = _idempotency_key(request, scope)
    try:
        receipts, replayed = await hub.publish(drafts, key)
    except (BackplaneUnavailable, BackplaneFull) as problem:
        retry_after = "1" if isinstance(problem, BackplaneUnavailable) else "5"
        return error(
            503, f"not published: {problem}", {"Retry-After": retry_after, **_cors_headers(request)}
        )
    headers = _cors_headers(request)
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return _json(receipts[0] if single else {"events": receipts}, 202, headers)


async def publish_channel(request: web.Request) -> web.Response:
    # Errors caught here rather than by the json_errors wrapper: this is the hottest request,
    # and a wrapper is one more coroutine per publish.
    hub = request.app[HUB]
    try:
        auth.check_publisher(request, hub.config.publish_tokens)
        channel = check_channel(request.match_info["name"])
        body = await _read_json(request)
        draft = _draft_of(body, channel, _SINGLE_FIELDS, "", hub.config)
        return await _publish(request, [draft], channel, single=True)
    except InvalidInput as problem:
        return error(problem.status, str(problem), _cors_headers(request))


async def publish_batch(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    config = hub.config
    auth.check_publisher(request, config.publish_tokens)
    body = await _read_json(request)
    if not isinstance(body, list) or not body:
        raise InvalidInput('the body must be a non-empty JSON array of {"channel", "data", ...}')
    if len(body) > config.max_batch:
        raise InvalidInput(
            f"{len(body)} events in one batch; the limit (max_batch) is {config.max_batch}", 413
        )
    drafts = []
    for index, item in enumerate(body):
        where = f"events[{index}]: "
        if not isinstance(item, dict):
            raise InvalidInput(f"{where}must be a JSON object")
        channel = item.get("channel")
        if not isinstance(channel, str):
            raise InvalidInput(f"{where}channel is required (a string)")
        try:
            check_channel(channel)
        except InvalidInput as problem:
            raise InvalidInput(f"{where}{problem}") from None
        drafts.append(_draft_of(item, channel, _BATCH_FIELDS, where, config))
    return await _publish(request, drafts, "", single=False)


# -- introspection ---------------------------------------------------------------------------


async def list_channels(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    try:
        channels = await hub.channel_list()
    except BackplaneUnavailable as problem:
        return error(503, f"channel list unavailable: {problem}")
    return _json(channels, headers=_cors_headers(request))


async def healthz(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    state = hub.backplane.state()
    return _json(
        {
            "status": "ok",
            "backplane": {"kind": state.kind, "connected": state.connected, **state.detail},
            "subscribers": hub.subscribers,
            "channels": hub.channel_count,
            "uptime": round(time.monotonic() - request.app[STARTED], 3),
        }
    )


async def readyz(request: web.Request) -> web.Response:
    """For load balancers: 503 while the backplane is down, so new clients go elsewhere."""
    state = request.app[HUB].backplane.state()
    if not state.connected:
        return error(503, f"backplane {state.kind} is unreachable")
    return _json({"ready": True})


async def metrics(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    gauges = (
        ("hub_subscribers", "Open event streams (connections) on this process.", hub.subscribers),
        ("hub_cluster_subscribers",
         "Open event streams on all hub processes (others' counts refreshed every 2 s).",
         hub.cluster_subscribers),
        ("hub_channels", "Channels with local subscribers.", hub.channel_count),
        ("hub_tickers", "Running clock tickers (one per active clock channel).", hub.tickers),
        ("hub_backplane_connected", "1 while the backplane answers.",
         int(hub.backplane.state().connected)),
    )  # fmt: skip
    return web.Response(
        text=request.app[METRICS].render(gauges),
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )


async def list_timezones(request: web.Request) -> web.Response:
    return _json(sorted(timezones()), headers={"Cache-Control": "max-age=86400"})


def add_routes(app: web.Application) -> None:
    # {name:[\s\S]+} because channel names may contain "/" (e.g. time/Asia/Kolkata/5), and
    # any other character must reach check_channel for a 400 rather than miss the route (404)
    channel = r"/channels/{name:[\s\S]+}/events"
    router = app.router
    router.add_get(channel, stream_handler(_one_channel), allow_head=False)
    router.add_get("/events", stream_handler(_many_channels), allow_head=False)
    router.add_get("/event-stream", stream_handler(_clock_of_query), allow_head=False)
    router.add_post(channel, publish_channel)
    router.add_post("/publish", json_errors(publish_batch))
    for path in (channel, "/events", "/event-stream", "/publish"):
        router.add_route("OPTIONS", path, preflight)
    router.add_get("/channels", list_channels)
    router.add_get("/healthz", healthz)
    router.add_get("/readyz", readyz)
    router.add_get("/metrics", metrics)
    router.add_get("/timezones", list_timezones)


def add_fallback(app: web.Application) -> None:
    """Register last (after every other route, the page's included): JSON 404/405."""
    app.router.add_route("*", "/{tail:.*}", fallback)
