"""Durable Streams across real hub processes on a shared backplane: a stream created on one
process is appended to, closed, deleted and created again through another, and every answer of
either process agrees, as a client behind a load balancer would need.

The backplane's part (every check atomic with the events, every mark reaching every reader in
order) is tested without HTTP in tests/backplane/test_streams.py and test_redis_streams.py; this
checks it end to end through the dialect, with ``python -m hub serve`` processes. A backplane
without ``Streams`` answers 501, and is skipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.conftest import REDIS_URL
from tests.support.hubs import hub_processes, several
from tests.support.processes import HubProcess

pytestmark = [pytest.mark.slow]


@pytest.fixture(
    params=[
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("nats", marks=pytest.mark.nats),
    ]
)
async def two(request: pytest.FixtureRequest) -> AsyncIterator[tuple[HubProcess, HubProcess]]:
    """Two hub processes on one prefix (Redis) or stream (NATS), the shipped defaults."""
    url = REDIS_URL if request.param == "redis" else str(request.getfixturevalue("nats_url"))
    async with hub_processes(url) as make:
        a, b = await several(make, 2, config=None, backplane=url, heartbeat=0.5)
        yield a, b


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def url(hub: HubProcess, path: str = "chat/1") -> str:
    return f"{hub.url}/v1/stream/{path}"


async def read(session: aiohttp.ClientSession, hub: HubProcess) -> tuple[int, str, dict[str, str]]:
    """A catch-up read of the whole stream: status, body, headers."""
    async with session.get(url(hub), params={"offset": "-1"}) as response:
        return response.status, await response.text(), dict(response.headers)


async def test_one_stream_through_two_processes(
    two: tuple[HubProcess, HubProcess], session: aiohttp.ClientSession
) -> None:
    a, b = two
    async with session.put(url(a), headers={"Content-Type": "text/plain"}) as created:
        if created.status == 501:
            pytest.skip(await created.text())
        assert created.status == 201, await created.text()
        start = created.headers["Stream-Next-Offset"]
    async with session.put(url(b), headers={"Content-Type": "text/plain"}) as again:
        assert again.status == 200 and again.headers["Stream-Next-Offset"] == start

    # a long-poll on A is answered by an append on B
    async def long_poll() -> tuple[int, str]:
        params = {"offset": start, "live": "long-poll"}
        async with session.get(url(a), params=params) as response:
            return response.status, await response.text()

    waiting = asyncio.create_task(long_poll())
    await asyncio.sleep(0.2)
    async with session.post(url(b), data="hello ", headers={"Content-Type": "text/plain"}) as sent:
        assert sent.status == 204, await sent.text()
    assert await waiting == (200, "hello ")

    # one producer's tuples sent through both processes at once: each stored once, in order
    async def send_all(hub: HubProcess) -> list[int]:
        statuses = []
        for seq in range(10):
            headers = {
                "Content-Type": "text/plain",
                "Producer-Id": "writer",
                "Producer-Epoch": "0",
                "Producer-Seq": str(seq),
            }
            async with session.post(url(hub), data=f"{seq} ", headers=headers) as response:
                statuses.append(response.status)
        return statuses

    first, second = await asyncio.gather(send_all(a), send_all(b))
    for one, other in zip(first, second, strict=True):
        assert sorted([one, other]) == [200, 204]  # stored once, the other a duplicate
    expected = "hello " + "".join(f"{seq} " for seq in range(10))
    assert (await read(session, a))[:2] == (200, expected)

    # closed through B: A answers it closed, refuses appends, and keeps the content readable
    async with session.post(url(b), headers={"Stream-Closed": "true"}) as closing:
        assert closing.status == 204
    status, body, headers = await read(session, a)
    assert (status, body, headers.get("Stream-Closed")) == (200, expected, "true")
    async with session.post(url(a), data="late", headers={"Content-Type": "text/plain"}) as late:
        assert late.status == 409

    # deleted through A, created again through B: empty on both, the old content never again
    async with session.delete(url(a)) as deleted:
        assert deleted.status == 204
    assert (await read(session, b))[0] == 404
    async with session.put(url(b), headers={"Content-Type": "text/plain"}) as renewed:
        assert renewed.status == 201
    async with session.post(url(a), data="new", headers={"Content-Type": "text/plain"}) as sent:
        assert sent.status == 204
    for hub in (a, b):
        status, body, headers = await read(session, hub)
        assert (status, body, headers.get("Stream-Closed")) == (200, "new", None)
