"""Fixtures: real hub servers on 127.0.0.1 sockets, on each backplane, and real HTTP clients.

``backplane`` is parametrized ("memory", "redis") for the contract tests: the same test runs
against both. Redis tests use a random key prefix each and never flush the database; the Redis
server is the one at ``SSEHUB_TEST_REDIS`` (default redis://127.0.0.1:6379/0), which must be up
(``.ci/run`` starts one).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from hub.app import create_app
from hub.config import Config, load
from hub.hub import Hub
from hub.routes import HUB
from tests.sse_client import Stream, open_stream

REDIS_URL = os.environ.get("SSEHUB_TEST_REDIS", "redis://127.0.0.1:6379/0")
BACKPLANES = ("memory", "redis")


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
        self, channel: str, data: Any, event: str | None = None, status: int = 202, **kw: Any
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"data": data}
        if event is not None:
            body["event"] = event
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


MakeHub = Callable[..., Awaitable[HubServer]]


@pytest.fixture(autouse=True)
async def _close_streams() -> AsyncIterator[None]:
    """Close the event streams a test left open, before its sessions and servers go away."""
    yield
    await Stream.close_all()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backplane" in metafunc.fixturenames:
        metafunc.parametrize(
            "backplane",
            [pytest.param("memory"), pytest.param("redis", marks=pytest.mark.redis)],
            ids=BACKPLANES,
        )


@pytest.fixture
def backplane_url(request: pytest.FixtureRequest) -> str:
    """The backplane setting for this test: "memory", or the test Redis."""
    name = request.getfixturevalue("backplane") if "backplane" in request.fixturenames else "memory"
    return REDIS_URL if name == "redis" else "memory"


@pytest.fixture
async def make_hub(
    aiohttp_server: Callable[..., Awaitable[TestServer]], backplane_url: str
) -> AsyncIterator[MakeHub]:
    """Start hubs sharing this test's backplane and Redis prefix: ``await make_hub(**settings)``."""
    sessions: list[aiohttp.ClientSession] = []
    servers: list[HubServer] = []
    prefix = f"ssehub-test:{uuid.uuid4().hex[:12]}:"

    async def make(**settings: Any) -> HubServer:
        settings.setdefault("backplane", backplane_url)
        settings.setdefault("redis_prefix", prefix)
        config = load(path=os.devnull, env={}, overrides=settings)
        server = await aiohttp_server(create_app(config))
        session = aiohttp.ClientSession()
        sessions.append(session)
        hub_server = HubServer(server, session, config)
        servers.append(hub_server)
        return hub_server

    yield make
    for hub_server in servers:
        for stream in hub_server.streams:
            await stream.close()
    for session in sessions:
        await session.close()


@pytest.fixture
async def hub(make_hub: MakeHub) -> HubServer:
    """One hub with default settings on this test's backplane."""
    return await make_hub()
