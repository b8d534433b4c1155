"""One way to start a hub in a test: in this process or as a real process, on any backplane.

Three variants behind one API (settings as keywords named like config keys, ``heartbeat=0.5``;
the test's backplane unless ``backplane=`` says otherwise; a Redis prefix and a NATS stream of the
test's own, deleted once its hubs are stopped):

- ``make_hub(**settings)`` (fixture, tests/conftest.py) -> ``HubServer``: ``create_app(config)``
  on aiohttp's test server, on a 127.0.0.1 socket. The fastest; what most tests use.
- ``make_hub_process(*args, **settings)`` (fixture) -> ``HubProcess``: ``python -m hub serve``
  as a user starts it: for the CLI, ``hub.protocol`` (only the real server uses it), signals,
  several processes on one backplane, a browser or a proxy in front.
- ``running_hub(backplane_url, **settings)`` (context manager) -> ``LiveHub``: the same process
  for synchronous tests (hypothesis and schemathesis drive their examples synchronously).

``Hubs`` is the bookkeeping the three share: which backplane, which prefix and stream, what to
delete at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from hub.app import HUB, create_app
from hub.clock_time import SYSTEM_TIME, TimeSource
from hub.config import Config, load
from hub.hub import Hub
from tests.support.backplane_rig import delete_stream, nats_settings
from tests.support.processes import LISTENING_RE, ROOT, HubProcess, clean_env, dies_with_us
from tests.support.shared_redis import REDIS_URL, RUN_PREFIX, delete_prefix, redis_prefix
from tests.support.sse_client import Stream, open_stream

__all__ = [
    "SHARED_SERVERS",
    "AiohttpServer",
    "HubProcess",
    "HubServer",
    "Hubs",
    "LiveHub",
    "MakeHub",
    "MakeHubProcess",
    "hub_env",
    "hub_processes",
    "hubs_in_process",
    "running_hub",
    "several",
    "start_in_process",
    "start_process",
]

#: The backplane servers the whole run shares (the test Redis; the run's nats-server adds itself
#: when it starts): what a test writes there is deleted after it. A server a test starts for
#: itself ends with the test and is never cleaned.
SHARED_SERVERS: set[str] = {REDIS_URL}


def hub_env(settings: dict[str, Any]) -> dict[str, str]:
    """Settings as the ``HUB_*`` environment variables a hub process reads."""
    return {f"HUB_{key.upper()}": str(value) for key, value in settings.items()}


class Hubs:
    """The hubs of one test: the backplane they default to, one Redis prefix and one NATS stream
    for all of them (hubs on one backplane see each other's events, whichever URL reaches it:
    a proxy in between, say), and what of those lies on shared servers, to delete once the hubs
    are stopped."""

    def __init__(self, backplane_url: str) -> None:
        self.backplane_url = backplane_url
        self.redis_prefix = redis_prefix(shared=False)  # marked shared once used there
        self.nats = nats_settings(uuid.uuid4().hex[:12])
        self._redis_prefixes: set[tuple[str, str]] = set()
        self._nats_streams: set[tuple[str, str]] = set()

    def settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        """``settings`` plus the backplane, Redis prefix and NATS stream where not given."""
        url = str(settings.setdefault("backplane", self.backplane_url))
        settings.setdefault("redis_prefix", self.redis_prefix)
        if url.startswith("nats:"):
            for key, value in self.nats.items():
                settings.setdefault(key, value)
        if url in SHARED_SERVERS and url.startswith("redis"):
            # never delete (or write under) a prefix that is not this run's: it may be someone's
            prefix = str(settings["redis_prefix"])
            assert prefix.startswith(RUN_PREFIX), "take prefixes from redis_prefix()"
            redis_prefix()  # marks the shared Redis as used
            self._redis_prefixes.add((url, prefix))
        if url in SHARED_SERVERS and url.startswith("nats:"):
            self._nats_streams.add((url, str(settings["nats_stream"])))
        return settings

    async def clean(self) -> None:
        """Delete what the test's hubs wrote on shared servers. Stop the hubs first: a running
        hub's presence refresh would write its keys back."""
        for url, prefix in self._redis_prefixes:
            await delete_prefix(prefix, url)
        for url, stream in self._nats_streams:
            await delete_stream(url, stream)


# -- in this process -------------------------------------------------------------------------


@dataclass
class HubServer:
    """A hub running on a real socket, and a client session to talk to it."""

    server: TestServer
    session: aiohttp.ClientSession
    config: Config
    #: streams opened through this server; closed at teardown even when a test fails
    streams: list[Stream] = field(default_factory=list)

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    @property
    def app(self) -> web.Application:
        app = self.server.app
        assert app is not None
        return app

    @property
    def hub(self) -> Hub:
        return self.app[HUB]

    async def publish(
        self,
        channel: str,
        data: Any,
        event: str | None = None,
        status: int = 202,
        tags: dict[str, str] | None = None,
        **kw: Any,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"data": data}
        if event is not None:
            body["event"] = event
        if tags is not None:
            body["tags"] = tags
        async with self.session.post(
            f"{self.url}/channels/{channel}/events", json=body, **kw
        ) as response:
            answer = await response.json()
            assert response.status == status, answer
            return dict(answer)

    async def subscribe(self, path: str, headers: dict[str, str] | None = None) -> Stream:
        stream = await open_stream(self.session, f"{self.url}{path}", headers)
        self.streams.append(stream)
        # the retry hint is the first thing written, so once it is in, the stream is registered
        # and live: nothing published after this returns can be missed
        while stream.parser.retry is None:
            chunk = await stream.response.content.readany()
            assert chunk, "the stream ended before its retry hint"
            stream.parser.feed(chunk)
        return stream

    async def close(self) -> None:
        """Close its streams, its session and its server; safe twice."""
        for stream in self.streams:
            await stream.close()
        await self.session.close()
        await self.server.close()


MakeHub = Callable[..., Awaitable[HubServer]]
AiohttpServer = Callable[..., Awaitable[TestServer]]


async def start_in_process(
    hubs: Hubs,
    aiohttp_server: AiohttpServer,
    clock_time: TimeSource = SYSTEM_TIME,
    **settings: Any,
) -> HubServer:
    """A hub in this process with ``settings`` (no config file: defaults plus these), whose
    clocks read ``clock_time`` (tests/support/clock_time.py: a time the test sets)."""
    config = load(path=os.devnull, env={}, overrides=hubs.settings(settings))
    server = await aiohttp_server(create_app(config, clock_time=clock_time))
    return HubServer(server, aiohttp.ClientSession(), config)


@contextlib.asynccontextmanager
async def hubs_in_process(
    aiohttp_server: AiohttpServer, backplane_url: str
) -> AsyncIterator[MakeHub]:
    """``make_hub``: a factory of in-process hubs; all are closed, and cleaned up after, on exit."""
    hubs = Hubs(backplane_url)
    servers: list[HubServer] = []

    async def make(**settings: Any) -> HubServer:
        server = await start_in_process(hubs, aiohttp_server, **settings)
        servers.append(server)
        return server

    try:
        yield make
    finally:
        for server in servers:
            await server.close()
        await hubs.clean()


# -- real processes --------------------------------------------------------------------------

MakeHubProcess = Callable[..., Awaitable[HubProcess]]


async def start_process(
    hubs: Hubs, *args: str, config: str | None = os.devnull, cwd: Path = ROOT, **settings: Any
) -> HubProcess:
    """``python -m hub serve *args`` with ``settings`` on 127.0.0.1 and a free port, started
    (listening) when this returns. ``config``: the config file (``HUB_CONFIG``); none by default,
    ``None`` for the hub's own lookup (``config.toml`` in ``cwd``: the shipped one at ROOT)."""
    settings = {"host": "127.0.0.1", "port": 0} | settings
    if config is not None:
        settings["config"] = config
    process = await HubProcess.spawn(*args, env=hub_env(hubs.settings(settings)), cwd=cwd)
    try:
        return await process.started()
    except BaseException:
        await process.end()
        raise


@contextlib.asynccontextmanager
async def hub_processes(backplane_url: str) -> AsyncIterator[MakeHubProcess]:
    """``make_hub_process``: a factory of ``python -m hub serve`` processes (``start_process``);
    on exit all are stopped by their pid (SIGTERM, then SIGKILL) and cleaned up after."""
    hubs = Hubs(backplane_url)
    started: list[HubProcess] = []

    async def make(*args: str, **settings: Any) -> HubProcess:
        process = await start_process(hubs, *args, **settings)
        started.append(process)
        return process

    try:
        yield make
    finally:
        await asyncio.gather(*(process.stop() for process in started))
        await hubs.clean()


async def several(make: MakeHubProcess, count: int, **settings: Any) -> list[HubProcess]:
    """``count`` hub processes with the same settings, started side by side."""
    return list(await asyncio.gather(*(make(**settings) for _ in range(count))))


# -- a real process, for synchronous tests ---------------------------------------------------


@dataclass
class LiveHub:
    url: str
    #: what the hub logged (stdout and stderr), read in the background
    lines: list[str] = field(default_factory=list)

    def tracebacks(self) -> list[str]:
        """The last line of each traceback logged: the exception and its message."""
        found, inside = [], False
        for line in self.lines:
            if line.startswith("Traceback"):
                inside = True
            elif inside and not line.startswith((" ", "\t")):
                found.append(line.rstrip())
                inside = False
        return found


@contextlib.contextmanager
def running_hub(
    backplane_url: str, timeout: float = 15.0, tracebacks_allowed: bool = False, **settings: Any
) -> Iterator[LiveHub]:
    """Run ``python -m hub serve`` (no config file) on ``backplane_url`` (the ``backplane_url``
    fixture) with ``settings``; yields it (its URL, its log). A traceback in its log fails the
    test unless ``tracebacks_allowed`` (the caller checks)."""
    hubs = Hubs(backplane_url)
    # the start line is logged at info; ask for it whatever the level of the rest
    env = hub_env(
        hubs.settings({"host": "127.0.0.1", "port": 0} | settings | {"log_level": "info"})
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "hub", "serve", "--config", os.devnull],
        cwd=ROOT,
        env=clean_env(**env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=dies_with_us,
    )
    lines: list[str] = []
    drain: threading.Thread | None = None
    try:
        assert process.stdout is not None
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        port = None
        for line in process.stdout:
            lines.append(line)
            match = LISTENING_RE.search(line)
            if match:
                port = int(match["port"])
                break
        timer.cancel()
        assert port is not None, "the hub did not start:\n" + "".join(lines)
        live = LiveHub(f"http://127.0.0.1:{port}", lines)
        # keep draining its output so a chatty hub never blocks on a full pipe
        drain = threading.Thread(target=lambda: lines.extend(process.stdout or ()), daemon=True)
        drain.start()
        yield live
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            if drain is not None:
                drain.join(5)
            process.stdout.close()
        asyncio.run(hubs.clean())
    assert tracebacks_allowed or not any(line.startswith("Traceback") for line in lines), (
        "the hub logged a traceback:\n" + "".join(lines[-80:])
    )
