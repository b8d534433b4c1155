"""``create_app(config)``: wires config, backplane, hub and routes into an aiohttp application.

This is where the parts meet: the backplane comes from its URL scheme (``open_backplane``), the
hub gets the clock tickers as its source of ephemeral channels, and each HTTP module adds its
routes bound to what they use, given here explicitly (the hub is no service locator). The demo
job runner is a plug-in: imported only when ``demo_jobs`` is on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from aiohttp import web

from hub import worker
from hub.admission import Admission
from hub.api.closing import CLOSE_PATH, add_close_route
from hub.api.introspect import Introspected, add_introspection_routes
from hub.api.openapi import add_openapi_route
from hub.api.private import add_private_routes, tickets_of
from hub.api.publish import add_publish_routes
from hub.api.publish_stream import add_publish_stream_routes
from hub.api.publishers import Publishers
from hub.api.responses import add_fallback, preflight_handler
from hub.api.subscribe import CHANNEL_PATH, Wiring, add_subscribe_routes
from hub.backplane import Closing, Deletion, Presence, open_backplane
from hub.backplane.totals import Totals
from hub.clock_time import SYSTEM_TIME, TimeSource
from hub.config import Config
from hub.dialects.ai_sdk import add_ai_sdk_routes
from hub.dialects.durable import add_durable_routes
from hub.events import Event
from hub.grants import Gate
from hub.hub import Hub
from hub.logs import redact_access_log
from hub.metrics import Metrics
from hub.protocol import handler_args
from hub.refusals import Refusals
from hub.shared_limits import Coordinated, SharedLimits
from hub.ticker import clock_sources
from hub.web import add_web_routes

if TYPE_CHECKING:
    from hub.backplane.engine_client import EngineBackplane

__all__ = ["HUB", "METRICS", "REFUSALS", "create_app"]

HUB = web.AppKey("hub", Hub)
METRICS = web.AppKey("metrics", Metrics)
REFUSALS = web.AppKey("refusals", Refusals)


def create_app(config: Config, *, clock_time: TimeSource = SYSTEM_TIME) -> web.Application:
    """The hub's application; ``clock_time``: what its clocks read (a test's own time source
    lets it cross a DST transition on a date of its choosing; everything else stays real)."""
    # No middlewares: a middleware frame would live as long as each event stream.
    app = web.Application(
        client_max_size=config.max_body_bytes,
        handler_args=handler_args(config.idle_timeout, config.max_stream_channels),
    )
    redact_access_log()  # whoever runs the app: no ticket in an access log line
    metrics = Metrics()
    backplane = open_backplane(config)
    hub = Hub(config, backplane, metrics, clock_sources(clock_time))
    app[HUB] = hub
    app[METRICS] = metrics
    coordinator, totals, shared = _coordination(config, backplane, hub)
    if totals is not None:  # a worker: /metrics shows the whole hub's counters
        totals.share_totals(metrics.snapshot)
    if worker.number():  # which worker answered: for operators and tests (hub.supervisor)
        app.on_response_prepare.append(_worker_header(str(worker.number())))
    gate = Gate(config, tickets_of(backplane))  # subscribe authorization: hub.grants
    gate.ticket_quota.shared = shared.ticket if shared is not None else None
    refusals = app[REFUSALS] = Refusals(config)  # one budget of log lines for every limit
    wired = Wiring(hub, config, metrics, refusals, Admission(config, hub.clients, shared))
    add_subscribe_routes(app, wired, gate)
    add_ai_sdk_routes(app, wired, gate)  # the AI SDK's resumable chat stream: hub.dialects.ai_sdk
    publishers = Publishers(config, refusals, shared)  # one rate bucket per publisher, all routes
    add_publish_routes(app, hub, publishers)
    add_publish_stream_routes(app, hub, publishers)
    add_durable_routes(app, wired, gate, publishers, backplane)  # hub.dialects.durable
    add_private_routes(app, hub, gate, backplane if isinstance(backplane, Deletion) else None)
    add_close_route(app, hub, backplane if isinstance(backplane, Closing) else None)
    preflight = preflight_handler(config)
    for path in (
        CHANNEL_PATH,
        "/events",
        "/event-stream",
        "/publish",
        "/publish/stream",
        "/tickets",
        CLOSE_PATH,
    ):
        app.router.add_route("OPTIONS", path, preflight)
    introspected = Introspected(config, hub.census, backplane, metrics, totals, coordinator)
    add_introspection_routes(app, introspected, gate)
    add_openapi_route(app)
    add_web_routes(app, config)
    if config.demo_jobs:
        from hub.demo import add_demo_routes  # a plug-in: not even imported unless turned on

        add_demo_routes(app, hub, gate)
    add_fallback(app)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        if coordinator is not None:  # linked before the first stream: its seat is asked there
            await coordinator.start(_UNFOLLOWED)
        await hub.start()
        yield
        await hub.stop()
        if coordinator is not None:
            await coordinator.close()

    async def end_streams(app: web.Application) -> None:
        await hub.end_streams()

    app.cleanup_ctx.append(lifecycle)
    # on_shutdown runs before aiohttp waits for handlers: ending the streams lets them return.
    app.on_shutdown.append(end_streams)
    return app


def _coordination(
    config: Config, backplane: object, hub: Hub
) -> tuple[EngineBackplane | None, Totals | None, SharedLimits | None]:
    """A worker's link to its supervisor (``hub.worker``): with the memory backplane the
    engine's, which is the backplane; with Redis or NATS the engine's client too, on the
    supervisor's coordination-only engine (``hub.backplane.engine_limits.COORDINATION``), as
    a coordinator, not a backplane: it follows nothing. What the link gives: the other workers'
    counters (``Totals``) and counts, and the hub-wide limits (``hub.shared_limits``). A hub of
    one process: none of them."""
    path = worker.coordinator()
    if not worker.number() or path is None:
        return None, None, None
    if isinstance(backplane, Coordinated):  # the engine's client: Presence and Totals too
        assert isinstance(backplane, Presence) and isinstance(backplane, Totals)
        hub.census.siblings = backplane.remote_counts  # its Presence: the other workers'
        return None, backplane, SharedLimits(backplane)
    from hub.backplane.engine_client import SCHEME, EngineBackplane  # workers on Redis, NATS

    coordinator = EngineBackplane(replace(config, backplane=f"{SCHEME}://{path}"))
    coordinator.share_counts(hub.census.local_counts)
    hub.census.siblings = coordinator.remote_counts
    return coordinator, coordinator, SharedLimits(coordinator)


class _Unfollowed:
    """The listener of a coordinator: it follows no channel, so nothing comes to it."""

    def deliver(self, events: Sequence[Event]) -> None: ...

    def lost(self, channel: str) -> None: ...

    def deleted(self, channel: str) -> None: ...

    def closed(self, channel: str) -> None: ...


_UNFOLLOWED = _Unfollowed()


def _worker_header(number: str) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    async def add(request: web.Request, response: web.StreamResponse) -> None:
        response.headers["X-Ssehub-Worker"] = number

    return add
