"""What the hub says about itself: /channels, /healthz, /readyz, /metrics, /timezones."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from aiohttp import web

from hub import auth, worker
from hub.api.responses import cors_headers, error, json_response
from hub.backplane import Backplane, BackplaneUnavailable, Catalog
from hub.backplane.totals import Totals
from hub.census import Census
from hub.config import Config
from hub.events import InvalidInput
from hub.grants import Gate
from hub.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from hub.metrics import Metrics
from hub.ticker import clock_channel, is_clock, timezones

if TYPE_CHECKING:
    from hub.backplane.engine_client import EngineBackplane

__all__ = ["add_introspection_routes"]


class Introspected(NamedTuple):
    """What these routes read, given at wiring (``hub.app``)."""

    config: Config
    census: Census
    backplane: Backplane
    metrics: Metrics
    #: a worker's: the other workers' counters (the engine's backplane, or the coordinator)
    totals: Totals | None = None
    #: a worker's link to its supervisor with Redis or NATS (``hub.app._coordination``; with
    #: memory the engine's link is the backplane's)
    coordinator: EngineBackplane | None = None


async def _channel_list(hub: Introspected) -> list[dict[str, Any]]:
    """Channels with subscribers (here or on other processes), history or a declared clock."""
    backplane = hub.backplane
    last_ids = await backplane.channels() if isinstance(backplane, Catalog) else {}
    declared = (clock_channel(c.timezone, c.interval) for c in hub.config.clocks)
    names = {*last_ids, *hub.census.channel_names, *declared, *hub.census.remote_counts().channels}
    return [
        {
            "name": name,
            "subscribers": hub.census.subscriber_count(name),
            "clock": is_clock(name),
            "last_id": last_ids.get(name),
        }
        for name in sorted(names)
    ]


def _visible_to(
    request: web.Request, hub: Introspected, gate: Gate | None
) -> Callable[[str], bool] | None:
    """Which channels a request may see listed (None: all of them). A scoped token sees only
    the channels it may publish to (another tenant's names and counts are not its business);
    any other publisher sees all; everyone else, all but the private ones."""
    config = hub.config
    try:
        scope = auth.publisher_scope(request, config.publish_tokens, config.publish_cors_origins)[1]
    except InvalidInput:
        if gate is not None and gate.private is not None:
            return lambda name: not gate.is_private(name)
        return None
    return None if scope is None else scope.match


def add_introspection_routes(
    app: web.Application, hub: Introspected, gate: Gate | None = None
) -> None:
    started = time.monotonic()
    metrics = hub.metrics
    coordinator = hub.coordinator

    async def list_channels(request: web.Request) -> web.Response:
        try:
            channels = await _channel_list(hub)
        except BackplaneUnavailable as problem:
            return error(503, f"channel list unavailable: {problem}")
        visible = _visible_to(request, hub, gate)
        if visible is not None:
            channels = [c for c in channels if visible(c["name"])]
        return json_response(channels, headers=cors_headers(hub.config, request))

    async def healthz(request: web.Request) -> web.Response:
        state = hub.census.health()
        answer = {
            "status": "ok",
            "backplane": {"kind": state.kind, "connected": state.connected, **state.detail},
            "subscribers": hub.census.subscribers,
            "channels": hub.census.channel_count,
            "uptime": round(time.monotonic() - started, 3),
        }
        if worker.number():  # one of several (hub.supervisor): the whole hub's, and which
            census = hub.census
            answer |= {
                "subscribers": census.hub_subscribers,
                "channels": census.hub_channels,
                "worker": worker.number(),
                "workers": worker.count(),
                "worker_subscribers": census.subscribers,
            }
            if coordinator is not None:  # Redis, NATS: the supervisor's link, and its workers
                linked = coordinator.state()
                answer["coordinator"] = {
                    "connected": linked.connected,
                    "workers": linked.detail.get("workers", 0),
                }
        return json_response(answer)

    async def readyz(request: web.Request) -> web.Response:
        """For load balancers: 503 while the backplane is down, so new clients go elsewhere."""
        state = hub.census.health()
        if not state.connected:
            return error(503, f"backplane {state.kind} is unreachable")
        if coordinator is not None and not coordinator.state().connected:  # no hub-wide limits
            return error(503, "the link to the supervisor is down")
        return json_response({"ready": True})

    totals = hub.totals

    async def render_metrics(request: web.Request) -> web.Response:
        # A worker of several: every figure is the whole hub's, whichever worker answers
        census = hub.census
        streams, channels = census.hub_subscribers, census.hub_channels
        gauges = (
            ("hub_subscribers", "Open event streams (connections) on this process (with "
             "workers: on all of them).", streams),
            ("hub_cluster_subscribers",
             "Open event streams on all hub processes (others' counts refreshed every 2 s).",
             hub.census.cluster_subscribers),
            ("hub_channels", "Channels with local subscribers (with workers: on any).", channels),
            ("hub_tickers", "Running clock tickers (one per active clock channel).",
             hub.census.sources),
            ("hub_backplane_connected", "1 while the backplane answers.",
             int(hub.census.health().connected)),
        )  # fmt: skip
        return web.Response(
            body=metrics.render(gauges, await totals.others_totals() if totals else None).encode(),
            # the exposition format's version is a parameter, which content_type= refuses
            headers={"Content-Type": METRICS_CONTENT_TYPE, "X-Content-Type-Options": "nosniff"},
        )

    async def list_timezones(request: web.Request) -> web.Response:
        return json_response(sorted(timezones()), headers={"Cache-Control": "max-age=86400"})

    router = app.router
    router.add_get("/channels", list_channels)
    router.add_get("/healthz", healthz)
    router.add_get("/readyz", readyz)
    router.add_get("/metrics", render_metrics)
    router.add_get("/timezones", list_timezones)
