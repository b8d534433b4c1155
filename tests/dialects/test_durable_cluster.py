"""Durable Streams across real ``python -m hub serve`` processes on one shared backplane (Redis,
NATS): a stream created on one process is appended to, read, closed and deleted through the
others, the checks holding across them (one producer tuple sent to two processes is stored once,
a long-poll on one wakes for an append on another, a close on one ends a read on another) and
the name created again after the delete starts empty everywhere.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest

from tests.conftest import REDIS_URL
from tests.support.hubs import hub_processes, several
from tests.support.processes import HubProcess

pytestmark = pytest.mark.slow


@pytest.fixture(
    params=[
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("nats", marks=pytest.mark.nats),
    ]
)
async def hubs(request: pytest.FixtureRequest) -> AsyncIterator[list[HubProcess]]:
    """Two hub processes on one shared backplane; skipped where it has no ``Streams`` (501)."""
    url = REDIS_URL if request.param == "redis" else str(request.getfixturevalue("nats_url"))
    async with hub_processes(url) as make, aiohttp.ClientSession() as session:
        started = await several(make, 2, heartbeat=0.5)
        probe = f"{started[0].url}/v1/stream/probe-{uuid.uuid4().hex}"
        async with session.put(probe) as response:
            if response.status == 501:
                pytest.skip((await response.json())["error"])
        yield started


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


JSON = {"Content-Type": "application/json"}


async def test_one_stream_through_two_processes(
    hubs: list[HubProcess], session: aiohttp.ClientSession
) -> None:
    a, b = (f"{hub.url}/v1/stream/ds/shared" for hub in hubs)
    async with session.put(a, headers=JSON) as response:
        assert response.status == 201
    async with session.put(b, headers=JSON) as response:
        assert response.status == 200, "the same stream, created on the other process"

    async def send(url: str, seq: int) -> int:
        producer = {"Producer-Id": "p", "Producer-Epoch": "0", "Producer-Seq": str(seq)}
        body = orjson.dumps({"n": seq})
        async with session.post(url, data=body, headers=JSON | producer) as response:
            return response.status

    for seq in range(5):  # each tuple to both processes at once: stored once
        statuses = sorted(await asyncio.gather(send(a, seq), send(b, seq)))
        assert statuses == [200, 204], (seq, statuses)
    async with session.get(f"{a}?offset=-1") as response:
        assert await response.json() == [{"n": n} for n in range(5)]
        tail = response.headers["Stream-Next-Offset"]

    async def wait_on_b() -> list[object]:
        async with session.get(f"{b}?offset={tail}&live=long-poll") as response:
            assert response.status == 200
            return list(await response.json())

    waiting = asyncio.create_task(wait_on_b())
    await asyncio.sleep(0.3)  # not a timing assertion: the append below wakes it either way
    async with session.post(a, data=b'{"n": 5}', headers=JSON) as response:
        assert response.status in (200, 204)
    assert await waiting == [{"n": 5}]

    async with session.post(b, headers={"Stream-Closed": "true"}) as response:
        assert response.status in (200, 204)
    async with session.post(a, data=b'{"n": 6}', headers=JSON) as response:
        assert response.status == 409, "closed on the other process"
    async with session.get(f"{a}?offset=-1") as response:
        assert response.headers.get("Stream-Closed") == "true"
        assert len(await response.json()) == 6

    async with session.delete(b) as response:
        assert response.status == 204
    async with session.head(a) as response:
        assert response.status == 404
    async with session.put(a, headers={"Content-Type": "text/plain"}) as response:
        assert response.status == 201, "created again on the other process"
    async with session.get(f"{b}?offset=-1") as response:
        assert response.status == 200 and await response.read() == b""
        assert response.headers["Content-Type"].startswith("text/plain")
