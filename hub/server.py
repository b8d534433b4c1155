"""Run the hub: listen, log one line at start and one at stop, stop cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable

from aiohttp import web

from hub.app import create_app
from hub.config import Config
from hub.routes import HUB

__all__ = ["run", "serve"]

log = logging.getLogger("hub")


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (the ``speed`` extra): cheaper socket writes on the fan-out path."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(config: Config) -> int:
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(serve(config))
    return 0


async def serve(config: Config, stop: asyncio.Event | None = None) -> None:
    """Serve until ``stop`` is set or SIGTERM/SIGINT arrives, then shut down gracefully."""
    started = time.monotonic()
    app = create_app(config)
    # handler_cancellation: a client that disconnects cancels its handler at once, so it stops
    # counting as a subscriber and never holds up a shutdown.
    runner = web.AppRunner(
        app,
        handler_cancellation=True,
        access_log=None,
        shutdown_timeout=config.shutdown_timeout,
    )
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, backlog=config.backlog)
    try:
        await site.start()
    except OSError as problem:
        await runner.cleanup()
        where = f"{config.host}:{config.port}"
        raise SystemExit(f"ssehub: cannot listen on {where}: {problem.strerror}") from None
    host, port = runner.addresses[0][:2]
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    publish = (
        f"{len(config.publish_tokens)} token(s)"
        if config.publish_tokens
        else "loopback clients only (no publish_tokens configured)"
    )
    log.info(
        "ssehub listening on http://%s:%d (backplane: %s; publish: %s; loop: %s; ready in %.2fs)",
        host, port, _redact(config.backplane), publish, type(loop).__module__.split(".")[0],
        time.monotonic() - started,
        extra={"event": "start", "host": host, "port": port},
    )  # fmt: skip
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        stopping = time.monotonic()
        subscribers = app[HUB].subscribers
        await runner.cleanup()
        log.info(
            "ssehub stopped (%d stream(s) ended) in %.2fs",
            subscribers, time.monotonic() - stopping,
            extra={"event": "stop"},
        )  # fmt: skip


def _redact(url: str) -> str:
    """A Redis URL without its password, for the log."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rpartition('@')[2]}"
