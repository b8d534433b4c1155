"""``create_app(config)``: wires config, backplane, hub and routes into an aiohttp application."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from aiohttp import web

from hub.backplane import Backplane
from hub.backplane.memory import MemoryBackplane
from hub.config import Config
from hub.demo import add_demo_routes
from hub.hub import Hub
from hub.metrics import Metrics
from hub.routes import HUB, METRICS, STARTED, add_fallback, add_routes
from hub.web import add_web_routes

__all__ = ["create_app", "make_backplane"]


def make_backplane(config: Config) -> Backplane:
    if config.backplane == "memory":
        return MemoryBackplane(
            history_size=config.history_size,
            history_ttl=config.history_ttl,
            max_channels=config.max_channels,
        )
    from hub.backplane.redis import RedisBackplane  # only deployments that use Redis import it

    return RedisBackplane(config)


def create_app(config: Config) -> web.Application:
    # No middlewares: a middleware frame would live as long as each event stream (see routes).
    app = web.Application(client_max_size=config.max_body_bytes)
    metrics = Metrics()
    hub = Hub(config, make_backplane(config), metrics)
    app[HUB] = hub
    app[METRICS] = metrics
    app[STARTED] = time.monotonic()
    add_routes(app)
    add_web_routes(app, config)
    if config.demo_jobs:
        add_demo_routes(app, hub)
    add_fallback(app)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await hub.start()
        yield
        await hub.stop()

    async def end_streams(app: web.Application) -> None:
        await hub.end_streams()

    app.cleanup_ctx.append(lifecycle)
    # on_shutdown runs before aiohttp waits for handlers: ending the streams lets them return.
    app.on_shutdown.append(end_streams)
    return app
