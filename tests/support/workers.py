"""Reaching one chosen worker of a hub of several (``workers``), for tests/workers.

The kernel spreads connections over the workers (``SO_REUSEPORT``, by the connection's
addresses and ports), so a test cannot pick a worker by URL: it opens connections until one
lands on the worker it wants, told by the ``X-Ssehub-Worker`` header every answer carries, and
keeps that connection (a session of one keep-alive connection: ``on_worker``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from tests.support.processes import HubProcess
from tests.support.sse_client import Stream, open_stream

__all__ = ["WORKER", "metrics_reach", "on_worker", "pids_of", "publish_on", "stream_on"]

WORKER = "X-Ssehub-Worker"
#: Connections tried before a test gives up on reaching a worker (each lands on one of N at
#: random: with 2 workers, 200 misses in a row is a chance of 2^-200).
ATTEMPTS = 200
_PIDS = re.compile(r"workers: \d+, pids (?P<pids>[0-9 ]+)")


def pids_of(hub: HubProcess) -> list[int]:
    """The workers' pids, by number, from the supervisor's start line."""
    found = _PIDS.search(hub.output)
    assert found, hub.output
    return [int(pid) for pid in found["pids"].split()]


@asynccontextmanager
async def on_worker(hub: HubProcess, number: int) -> AsyncIterator[aiohttp.ClientSession]:
    """A client session whose one keep-alive connection is served by worker ``number``."""
    for _ in range(ATTEMPTS):
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
        try:
            async with session.get(f"{hub.url}/healthz") as answer:
                await answer.read()
                landed = int(answer.headers[WORKER])
        except BaseException:
            await session.close()
            raise
        if landed == number:
            try:
                yield session
            finally:
                await session.close()
            return
        await session.close()
    raise AssertionError(f"no connection landed on worker {number} in {ATTEMPTS} tries")


async def stream_on(
    session: aiohttp.ClientSession, hub: HubProcess, number: int, path: str, **headers: str
) -> Stream:
    """An event stream served by worker ``number``, live (its retry hint is in)."""
    for _ in range(ATTEMPTS):
        connector = aiohttp.TCPConnector(force_close=True)
        own = aiohttp.ClientSession(connector=connector)
        stream = await open_stream(own, f"{hub.url}{path}", dict(headers))
        if int(stream.response.headers[WORKER]) != number:
            await stream.close()
            await own.close()
            continue
        while stream.parser.retry is None:  # registered and live once the retry hint is in
            chunk = await stream.response.content.readany()
            assert chunk, "the stream ended before its retry hint"
            stream.parser.feed(chunk)
        _SESSIONS.append(own)
        return stream
    raise AssertionError(f"no stream landed on worker {number} in {ATTEMPTS} tries")


#: The sessions of the streams opened, closed by ``close_sessions`` at the end of a test.
_SESSIONS: list[aiohttp.ClientSession] = []


async def close_sessions() -> None:
    while _SESSIONS:
        await _SESSIONS.pop().close()


async def metrics_reach(
    session: aiohttp.ClientSession, hub: HubProcess, wanted: dict[str, str]
) -> None:
    """Scrape ``/metrics`` through ``session`` until it shows ``wanted`` (name: value): the
    other workers' counters come with their reports, once a second, so a few scrapes at most."""
    values: dict[str, str] = {}
    async with asyncio.timeout(10):
        while {k: values.get(k) for k in wanted} != wanted:
            async with session.get(f"{hub.url}/metrics") as answer:
                text = await answer.text()
            values = dict(line.rsplit(" ", 1) for line in text.splitlines() if line[:1] != "#")
            await asyncio.sleep(0.2)


async def publish_on(session: aiohttp.ClientSession, hub: HubProcess, channel: str, data: Any,
                     **kw: Any) -> tuple[int, dict[str, Any], int]:  # fmt: skip
    """Publish through ``session``: (status, JSON answer, the worker that answered)."""
    async with session.post(
        f"{hub.url}/channels/{channel}/events", json={"data": data}, **kw
    ) as answer:
        body = await answer.json()
        return answer.status, body, int(answer.headers[WORKER])
