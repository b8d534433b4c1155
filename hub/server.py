"""Run the hub: listen, log one line at start and one at stop, stop cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import errno
import importlib
import logging
import os
import resource
import signal
import time
import weakref
from collections.abc import Callable

from aiohttp import web

from hub import worker as hub_worker
from hub.app import HUB, create_app
from hub.clients import ClientAddresses
from hub.config import Config
from hub.config_access import redact_url
from hub.protocol import HubRunner

__all__ = [
    "AIOFASTNET_ENV",
    "aiofastnet_asked",
    "loop_factory",
    "loop_name",
    "raise_open_files_limit",
    "run",
    "serve",
    "start_details",
]

log = logging.getLogger("hub")


#: Set to ``1`` to run on aiofastnet's transports (Cython, on uvloop) when it is installed: off
#: by default, as it saved nothing measurable here (docs/performance.md has the figures).
AIOFASTNET_ENV = "SSEHUB_AIOFASTNET"
#: Loops made by ``loop_factory`` with aiofastnet's transports, for the start line.
_FASTNET_LOOPS: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def aiofastnet_asked() -> bool:
    """Whether the environment asks for aiofastnet (an opt-in: see ``AIOFASTNET_ENV``)."""
    return os.environ.get(AIOFASTNET_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (the ``speed`` extra): cheaper socket writes on the fan-out path.
    With ``SSEHUB_AIOFASTNET=1`` and aiofastnet installed, its transports on it (an experiment
    to re-measure: same-run A/B figures in docs/performance.md)."""
    try:
        import uvloop
    except ImportError:
        return None
    if not aiofastnet_asked():
        return uvloop.new_event_loop
    try:  # by name: an optional package outside every extra, so type checks never need it
        aiofastnet = importlib.import_module("aiofastnet")
    except ImportError:
        log.warning("SSEHUB_AIOFASTNET=1 but aiofastnet is not installed: running on uvloop")
        return uvloop.new_event_loop
    patched: Callable[[], asyncio.AbstractEventLoop] = aiofastnet.loop_factory(
        uvloop.new_event_loop
    )

    def factory() -> asyncio.AbstractEventLoop:
        loop = patched()
        _FASTNET_LOOPS.add(loop)
        return loop

    return factory


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """``uvloop``, ``uvloop+aiofastnet`` or ``asyncio``: what the start line says."""
    name = type(loop).__module__.split(".")[0]
    return f"{name}+aiofastnet" if loop in _FASTNET_LOOPS else name


def raise_open_files_limit() -> tuple[int, int]:
    """Raise this process's soft limit of open files to its hard limit; returns (before, now).

    Each stream holds a socket: with the usual soft limit of 1,024 the hub would refuse
    connections (EMFILE) long before max_subscribers, e.g. in a load test from one machine.
    The hard limit is the operator's ceiling (ulimit -Hn, LimitNOFILE=, docker --ulimit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 1 << 20 if hard == resource.RLIM_INFINITY else hard  # the kernel's usual nr_open
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return soft, soft
    return soft, target


def run(config: Config, *, worker: bool = False) -> int:
    """``worker``: one of a supervisor's workers (``hub.worker``): the port is shared."""
    raise_open_files_limit()
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(serve(config, worker=worker))
    return 0


async def serve(config: Config, stop: asyncio.Event | None = None, *, worker: bool = False) -> None:
    """Serve until ``stop`` is set or SIGTERM/SIGINT arrives, then shut down gracefully."""
    started = time.monotonic()
    app = create_app(config)
    # handler_cancellation: a client that disconnects cancels its handler at once, so it stops
    # counting as a subscriber and never holds up a shutdown. HubRunner: aiohttp's own errors
    # (unparsable requests) answered in JSON and logged in one short line (hub.protocol).
    runner = HubRunner(
        app,
        ClientAddresses(config.trusted_proxies),
        handler_cancellation=True,
        access_log=None,
        shutdown_timeout=config.shutdown_timeout,
    )
    await runner.setup()
    # reuse_port: the workers of one hub listen on one port, the kernel spreads connections
    site = web.TCPSite(
        runner, config.host, config.port, backlog=config.backlog, reuse_port=worker or None
    )
    try:
        await site.start()
    except OSError as problem:
        await runner.cleanup()
        where = _authority(config.host, config.port)
        hint = ""
        if problem.errno == errno.EADDRINUSE:
            hint = (
                " (another process, maybe another hub, listens there: choose another port with"
                " --port or HUB_PORT, or stop that process)"
            )
        reason = os.strerror(problem.errno) if problem.errno else str(problem)
        raise SystemExit(f"ssehub: cannot listen on {where}: {reason}{hint}") from None
    host, port = runner.addresses[0][:2]
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if worker:  # the supervisor says "listening" once every worker is (hub.supervisor)
        log.info(
            "ssehub worker %d/%d serving http://%s (pid %d; backplane: %s; loop: %s)",
            hub_worker.number(), hub_worker.count(), _authority(host, port), os.getpid(),
            redact_url(config.backplane), loop_name(loop),
            extra={"event": "start", "host": host, "port": port, "worker": hub_worker.number()},
        )  # fmt: skip
        hub_worker.ready()
    else:
        log.info(
            "ssehub listening on http://%s (%s; ready in %.2fs)",
            _authority(host, port), start_details(config, loop_name(loop)),
            time.monotonic() - started,
            extra={"event": "start", "host": host, "port": port, "profile": config.profile},
        )  # fmt: skip
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        stopping = time.monotonic()
        subscribers = app[HUB].census.subscribers
        await runner.cleanup()
        log.info(
            "ssehub stopped (%d stream(s) ended) in %.2fs",
            subscribers, time.monotonic() - stopping,
            extra={"event": "stop"},
        )  # fmt: skip


def start_details(config: Config, loop: str) -> str:
    """What the start line says of a hub (the supervisor's line of a hub of workers too)."""
    publish = (
        f"{len(config.publish_tokens)} token(s)"
        if config.publish_tokens
        else "loopback clients only (no publish_tokens configured)"
    )
    _, files = resource.getrlimit(resource.RLIMIT_NOFILE)
    return (
        f"backplane: {redact_url(config.backplane)}; publish: {publish}; "
        f"profile: {config.profile}, limits per client {_limits(config)}; open files: {files}; "
        f"loop: {loop}"
    )


def _limits(config: Config) -> str:
    """Which limits per client are on, for the start line (docs/limits.md)."""
    on = [
        key
        for key in ("subscribe_rate", "max_client_streams", "max_client_channels", "publish_rate")
        if getattr(config, key)
    ]
    return ("on: " + ", ".join(on)) if on else "off"


def _authority(host: str, port: int) -> str:
    """``host:port`` as in a URL: an IPv6 address goes in brackets (``[::1]:8080``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
