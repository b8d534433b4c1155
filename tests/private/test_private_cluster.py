"""Private channels across real ``python -m hub serve`` processes sharing one Redis: a ticket
issued on one is good once on any; a deletion on one closes the streams of every one; and no
process logs a secret (each runs with log_level = debug)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import jwt
import pytest

from tests.conftest import REDIS_URL
from tests.support.hubs import hub_processes, several
from tests.support.processes import HubProcess
from tests.support.sse_client import Stream, open_stream

pytestmark = [pytest.mark.redis, pytest.mark.slow]

SECRET = "cluster-subscribe-secret-32-bytes-long!"
TOKEN = "cluster-publish-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def hubs() -> AsyncIterator[Callable[..., Any]]:
    """``await hubs(n)``: n hub processes (the shipped config.toml plus these settings) on one
    prefix of the shared Redis."""
    settings = {
        "heartbeat": 0.5, "log_level": "debug", "private_channels": "user/*,private/*",
        "subscribe_jwt_secret": SECRET, "publish_tokens": TOKEN,
    }  # fmt: skip
    async with hub_processes(REDIS_URL) as make:

        async def start(count: int) -> list[HubProcess]:
            return await several(make, count, config=None, **settings)

        yield start


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def issue(session: aiohttp.ClientSession, hub: HubProcess, channels: list[str]) -> str:
    async with session.post(f"{hub.url}/tickets", json={"channels": channels}, headers=AUTH) as r:
        assert r.status == 201
        return str((await r.json())["ticket"])


async def status_of(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url, headers={"Accept": "text/event-stream"}) as response:
        await response.read()
        return response.status


async def live(session: aiohttp.ClientSession, url: str) -> Stream:
    """A stream that is registered (its retry hint is in)."""
    stream = await open_stream(session, url)
    while stream.parser.retry is None:
        chunk = await stream.response.content.readany()
        assert chunk, "the stream ended before its retry hint"
        stream.parser.feed(chunk)
    return stream


async def publish(session: aiohttp.ClientSession, hub: HubProcess, channel: str, data: Any) -> int:
    async with session.post(
        f"{hub.url}/channels/{channel}/events", json={"data": data}, headers=AUTH
    ) as response:
        await response.read()
        return response.status


async def test_ticket_and_deletion_across_processes(
    hubs: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    a, b = await hubs(2)
    # A ticket issued on A opens a stream on B, once; then it is refused everywhere.
    ticket = await issue(session, a, ["user/42"])
    path = f"/events?channel=user/42&channel=news&ticket={ticket}"
    several = await live(session, f"{b.url}{path}")
    assert await status_of(session, f"{a.url}{path}") == 403
    assert await status_of(session, f"{b.url}{path}") == 403
    # A grant in a header, on B too.
    grant = jwt.encode(
        {"exp": int(time.time()) + 60, "channels": ["user/*"], "sub": "cluster-user"}, SECRET
    )
    alone = await live_with(session, f"{b.url}/channels/user/42/events", grant)
    assert await publish(session, a, "user/42", "before") == 202
    for stream in (several, alone):
        assert (await stream.next(10)).data == "before"
    # DELETE on A closes B's streams: the single one ends, the other goes on.
    async with session.delete(f"{a.url}/channels/user/42", headers=AUTH) as response:
        assert response.status == 200, await response.text()
    for stream in (several, alone):
        close = await stream.next(10)
        assert (close.event, close.data) == ("close", '{"channel":"user/42"}')
    assert await alone.until_end(10) == []
    assert await publish(session, a, "news", "still here") == 202
    assert (await several.next(10)).data == "still here"
    # Afterwards, on B as well: 204 for the deleted channel alone, 410 for a publish.
    second = await issue(session, b, ["user/42"])
    assert await status_of(session, f"{b.url}/channels/user/42/events?ticket={second}") == 204
    assert await publish(session, b, "user/42", "after") == 410
    await several.close()
    for hub in (a, b):
        await hub.stop()
        assert "cluster-user" in b.output  # the grant's subject is logged (where it was used)...
        for secret in (SECRET, TOKEN, grant, ticket, second):
            assert secret not in hub.output  # ...no secret is


async def live_with(session: aiohttp.ClientSession, url: str, grant: str) -> Stream:
    stream = await open_stream(session, url, {"Authorization": f"Bearer {grant}"})
    while stream.parser.retry is None:
        chunk = await stream.response.content.readany()
        assert chunk
        stream.parser.feed(chunk)
    return stream
