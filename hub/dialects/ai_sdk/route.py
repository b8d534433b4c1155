"""``GET /ai/{name}/stream``: a channel's whole history, then live, as a UI message stream.

``DefaultChatTransport.reconnectToStream`` reads ``204`` as "nothing to resume" and any other
non-2xx as an error it throws (it never retries by itself, unlike ``EventSource``), so:

- ``204`` only for a channel with nothing to replay: never published to, its history gone
  after ``history_ttl``, or deleted (one history read of one event, before the stream);
- ``200`` ``text/event-stream`` with ``x-vercel-ai-ui-message-stream: v1``: the history from
  the start (``resumeStreamIsReplay``: the chat rebuilds the answer from its ``start`` chunk),
  then live, then ``data: [DONE]`` and the end of the body once the channel is closed;
- errors as JSON: ``400`` (a bad name, a clock), ``401``/``403`` (a private channel without the
  grant or ticket the native route wants: the transport sends its ``headers`` and, with
  ``credentials: "include"``, the cookie), ``429`` + ``Retry-After`` for a client address over
  ``subscribe_rate``, ``max_client_streams`` or ``max_client_channels``, ``503`` +
  ``Retry-After`` when the hub is at capacity or the backplane away. ``200`` + ``retry:`` (the
  native route's polite refusal) would read here as an empty answer, so refusals are errors
  the application sees and may retry after ``Retry-After``.

Counted like native streams: ``hub_subscribers_refused_total`` for each refusal, and the same
per-address limits (one bucket and one stream count per address across both routes would need
their state shared with ``hub.api.subscribe``; each route keeps its own, as each native route
of that module shares one ``_stream_handler`` per path).
"""

from __future__ import annotations

from aiohttp import web

from hub.api.responses import Handler, answer, cors_headers, error, preflight_handler
from hub.api.subscribe import Wiring
from hub.backplane import BackplaneUnavailable
from hub.clients import ClientAddresses
from hub.dialects.ai_sdk.wire import AI_SDK
from hub.events import InvalidInput, check_channel
from hub.grants import Gate
from hub.hub import AllDeleted, Ask, AtCapacity
from hub.outlet import Outlet
from hub.ticker import is_clock

__all__ = ["AI_PATH", "HEADERS", "add_ai_sdk_routes"]

#: ``[\s\S]+``: channel names hold "/" (``chat/<id>``); any other character reaches
#: ``check_channel`` for a 400 rather than missing the route.
AI_PATH = r"/ai/{name:[\s\S]+}/stream"
#: Besides ``hub.outlet.SSE_HEADERS`` (content type, no-cache, keep-alive, no nginx buffering):
#: what the AI SDK's own server helpers send.
HEADERS = {"x-vercel-ai-ui-message-stream": "v1"}


def _stream_handler(wired: Wiring, gate: Gate | None) -> Handler:
    core, config, metrics, refusals, admission = wired
    addresses = ClientAddresses(config.trusted_proxies, config.limits_per_address)
    ack_timeout = config.tcp_user_timeout or config.heartbeat
    if gate is not None and gate.private is None:
        gate = None

    def refuse(request: web.Request, status: int, why: str, wait: float = 1.0) -> web.Response:
        metrics.subscribers_refused += 1
        seconds = str(max(1, round(wait + 0.5)))
        return error(status, why, {"Retry-After": seconds, **cors_headers(config, request)})

    async def stream(request: web.Request) -> web.StreamResponse:
        headers = cors_headers(config, request)
        try:
            name = check_channel(request.match_info["name"])
            if is_clock(name):
                raise InvalidInput(f"{name!r} is a clock channel: it holds no chat")
            deadline = None
            if gate is not None and (private := gate.needs_grant([name])):
                deadline = await gate.check(request, private)
        except InvalidInput as problem:
            return answer(problem, headers)
        except BackplaneUnavailable:
            return refuse(request, 503, "the backplane is unavailable (a ticket unread)")
        client = addresses.of(request)
        refused = await admission.admit(client, (name,))
        if refused is not None:
            refusals.refused(client, refused.setting, "a stream")
            status = 429 if refused.per_address else 503
            return refuse(request, status, refused.why, refused.wait or 1.0)
        try:
            try:
                if not (await core.history([name], None, 1)).events:
                    return web.Response(status=204, headers=headers)
            except BackplaneUnavailable:
                return refuse(request, 503, "the backplane is unavailable")
            outlet = Outlet(request, {**headers, **HEADERS}, ack_timeout)
            await core.stream(Ask((name,), None, (name,), client, deadline), AI_SDK, outlet)
        except AtCapacity as why:
            limit = str(why).removesuffix(" reached")  # the setting, as the native route
            if limit.isidentifier():  # not "the hub is shutting down"
                refusals.refused(client, limit, "a stream")
            if limit == "max_client_channels":
                return refuse(request, 429, f"too many channels from your address ({why})")
            return refuse(request, 503, f"the hub is at capacity ({why})")
        except BackplaneUnavailable:
            return refuse(request, 503, "the backplane is unavailable")
        except AllDeleted:
            return web.Response(status=204, headers=headers)
        finally:
            admission.leave(client, (name,))
        return outlet

    return stream


def add_ai_sdk_routes(app: web.Application, wired: Wiring, gate: Gate | None) -> None:
    app.router.add_get(AI_PATH, _stream_handler(wired, gate), allow_head=False)
    # (the transport sends its ``headers``: a grant in ``Authorization`` is allowed there)
    app.router.add_route("OPTIONS", AI_PATH, preflight_handler(wired.config))
