"""The native dialect's event-stream handlers: ``/channels/{name}/events``, ``/events``,
``/event-stream``.

One dialect over the core (``hub.hub`` says how a dialect plugs in): each handler checks its
request, builds an ``Ask`` and makes one call, ``hub.stream``, with the native view
(``hub.view.SSE``) and an ``Outlet`` to prepare; it maps the core's outcomes to its answers.

A browser's ``EventSource`` gives up for good on any answer but ``200 text/event-stream``, so
a hub at capacity, or with its backplane away, answers ``200`` with a jittered ``retry:`` and
ends the stream (``_refuse``); only bad requests get a JSON 4xx. The same polite refusal
answers a client address over ``subscribe_rate`` or ``max_client_streams`` (``hub.admission``,
counted around the stream, hub-wide with workers) or ``max_client_channels`` (counted by the
hub, which knows when a channel comes and goes).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import NamedTuple

from aiohttp import web

from hub import sse
from hub.admission import Admission
from hub.api.responses import Handler, answer, cors_headers
from hub.backplane import BackplaneUnavailable
from hub.clients import ClientAddresses
from hub.config import Config
from hub.events import InvalidInput, check_channel
from hub.filters import parse_filter, parse_since
from hub.grants import Gate
from hub.hub import AllDeleted, Ask, AtCapacity, Hub
from hub.metrics import Metrics
from hub.outlet import Outlet
from hub.refusals import Refusals
from hub.ticker import clock_channel, is_clock, parse_clock, resolve_timezone
from hub.view import SSE

__all__ = ["add_subscribe_routes"]

#: The route of one channel. ``[\s\S]+`` because channel names may contain "/" (e.g.
#: time/Asia/Kolkata/5), and any other character must reach check_channel for a 400 rather than
#: miss the route (404).
CHANNEL_PATH = r"/channels/{name:[\s\S]+}/events"


def _check_channels(config: Config, names: list[str]) -> list[str]:
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


class Wiring(NamedTuple):
    """What the routes are given at wiring (``hub.app``): the core and what they count with."""

    hub: Hub
    config: Config
    metrics: Metrics
    #: log lines of clients turned away by a limit
    refusals: Refusals
    #: the subscribe rate and stream counts, of this process or of the whole hub (workers)
    admission: Admission


def _refuse(
    request: web.Request,
    hub: Wiring,
    why: str = "the hub is at capacity",
    at_least: float = 0.0,
    client: str = "",
    setting: str = "",
) -> web.Response:
    """Turn a subscriber away without making its EventSource give up: 200, retry later
    (``at_least`` seconds: when a rate limit allows the next stream). With the ``setting`` that
    refused it, a log line names it and the ``client`` (hub.refusals limits those lines)."""
    hub.metrics.subscribers_refused += 1
    if setting:
        hub.refusals.refused(client, setting, "a stream")
    base = max(hub.config.retry, int(at_least * 1000))
    delay = int(base * random.uniform(1.0, 3.0)) + random.randint(0, 1000)
    return web.Response(
        body=sse.retry(delay) + sse.comment(f"{why}; retry later"),
        content_type="text/event-stream",
        headers={"Cache-Control": "no-cache", **cors_headers(hub.config, request)},
    )


def _stream_handler(
    wired: Wiring, names_of: Callable[[web.Request], list[str]], gate: Gate | None = None
) -> Handler:
    """A subscribe handler: ``names_of`` says which channels a request asks for; ``gate``
    checks grants for private channels (None: this route has none, or none are configured)."""
    hub = wired
    core = wired.hub
    config = wired.config
    addresses = ClientAddresses(config.trusted_proxies, config.limits_per_address)
    admission = wired.admission
    # The kernel drops a connection whose data goes unacknowledged this long (a vanished
    # peer): with a write at least every heartbeat interval, it is released within two.
    ack_timeout = config.tcp_user_timeout or config.heartbeat
    if gate is not None and gate.private is None:
        gate = None  # no private channels: not even a pattern match per stream

    async def stream(request: web.Request) -> web.StreamResponse:
        # Everything a stream needs lives in this one frame for the stream's whole life.
        try:
            channels = _check_channels(config, names_of(request))
            start = request.query.get("from")
            if start not in (None, "start"):
                raise InvalidInput(f"from={start!r} is not understood; use from=start")
            replay = _replay_of(request, channels, start is not None)
            query = request.query
            view = SSE.filtered(parse_filter(query.getall("event", []), query.getall("tag", [])))
            since = _since_of(request, start is not None or bool(replay))
            deadline = who = None
            if gate is not None and (private := gate.needs_grant(channels)):
                deadline, who = await gate.grant(request, private)
        except InvalidInput as problem:
            return answer(problem, cors_headers(config, request))
        except BackplaneUnavailable:
            return _refuse(request, hub, "the backplane is unavailable")  # a ticket unread
        client = addresses.of(request)
        refused = await admission.admit(client, channels)
        if refused is not None:
            return _refuse(request, hub, refused.named, refused.wait, client, refused.setting)
        last_event_id = request.headers.get("Last-Event-ID") or request.query.get("lastEventId")
        response = Outlet(request, cors_headers(config, request), ack_timeout)
        try:
            # the Ask inline: a name here would keep it as long as the stream
            await core.stream(
                Ask(
                    channels,
                    last_event_id or None,
                    channels if start else replay,
                    client,
                    deadline,
                    since,
                    who,
                ),
                view,
                response,
            )
        except AtCapacity as why:
            limit = str(why).removesuffix(" reached")  # "max_subscribers reached": the setting
            setting = limit if limit.isidentifier() else ""  # not "the hub is shutting down"
            return _refuse(request, hub, f"the hub is at capacity ({why})", 0.0, client, setting)
        except BackplaneUnavailable:
            # 200 + retry: the browser tries again (with its Last-Event-ID) a little later.
            return _refuse(request, hub, "the backplane is unavailable")
        except AllDeleted:
            # 204: the EventSource stops reconnecting
            return web.Response(status=204, headers=cors_headers(config, request))
        finally:
            admission.leave(client, channels)
        return response

    return stream


def _replay_of(request: web.Request, channels: list[str], from_start: bool) -> list[str]:
    """``replay=<channel>`` (repeatable): replay only those of the stream's channels from the
    start; the others start live. ``from=start`` means all of them."""
    names = request.query.getall("replay", [])
    if names and from_start:
        raise InvalidInput(
            "replay: use from=start (every channel) or replay=<channel> (those only), not both"
        )
    for name in names:
        if name not in channels:
            raise InvalidInput(f"replay={name!r} is not one of the stream's channels")
    return names


def _since_of(request: web.Request, replaying: bool) -> float | None:
    """``since=<RFC 3339 time or Unix seconds>``: the history stored at or after it, then live
    (a ``Last-Event-ID`` wins over it: an ``EventSource`` reconnects with the same URL)."""
    text = request.query.get("since")
    if text is None:
        return None
    if replaying:
        raise InvalidInput("since: use since= or from=start or replay=<channel>, one of them")
    return parse_since(text)


def _one_channel(request: web.Request) -> list[str]:
    return [request.match_info["name"]]


def _many_channels(request: web.Request) -> list[str]:
    return request.query.getall("channel", [])


def _clock_of_query(request: web.Request) -> list[str]:
    """The original design's URL: /event-stream?city=<IANA timezone>&sec=<interval>."""
    city = request.query.get("city")
    if not city:
        raise InvalidInput("city is required: /event-stream?city=Asia/Kolkata&sec=5")
    seconds = request.query.get("sec", "1")
    if not seconds.isascii() or not seconds.isdigit():
        raise InvalidInput(f"sec={seconds!r}: use whole seconds from 1 to 3600")
    return [clock_channel(resolve_timezone(city), int(seconds))]


def add_subscribe_routes(app: web.Application, hub: Wiring, gate: Gate | None = None) -> None:
    router = app.router
    router.add_get(CHANNEL_PATH, _stream_handler(hub, _one_channel, gate), allow_head=False)
    router.add_get("/events", _stream_handler(hub, _many_channels, gate), allow_head=False)
    router.add_get("/event-stream", _stream_handler(hub, _clock_of_query, gate), allow_head=False)
