"""Limits of a hub of several workers hold for the whole hub (issue 22), on every backplane.

Real supervisors and worker processes (``workers = 2``); every client comes from 127.0.0.1, one
address. A stream is opened on a chosen worker over a connection probed first with ``/healthz``
(``on_worker``), so the probing never takes a seat or spends a rate. An admitted stream is
chunked; a refused one is a ``200`` with a body of known length (``retry:`` and why): that is
how a test tells them apart, with no timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest

from tests.conftest import REDIS_URL, MakeHubProcess
from tests.support.hubs import hub_processes
from tests.support.processes import HubProcess
from tests.support.sse_client import Stream, open_stream
from tests.support.workers import WORKER, metrics_reach, on_worker, pids_of, publish_on

pytestmark = [pytest.mark.slow]

TOKEN = "hubwide-publish-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Streams:
    """Streams opened on chosen workers, each over a session of its own; closed at the end."""

    def __init__(self, hub: HubProcess, stack: contextlib.AsyncExitStack) -> None:
        self.hub, self.stack = hub, stack

    async def open(self, worker: int, path: str = "/channels/c/events") -> Stream | str:
        """A live stream served by ``worker``, or the refusal's body when it was turned away."""
        session = await self.stack.enter_async_context(on_worker(self.hub, worker))
        stream = await open_stream(session, f"{self.hub.url}{path}")
        assert stream.response.headers[WORKER] == str(worker)
        if stream.response.content_length is not None:  # a refusal: 200, retry and why
            text = await stream.response.text()
            await stream.close()
            assert text.startswith("retry: "), text
            return text
        return stream

    async def live(self, worker: int, path: str = "/channels/c/events") -> Stream:
        opened = await self.open(worker, path)
        assert isinstance(opened, Stream), opened
        return opened

    async def refused(self, worker: int, path: str = "/channels/c/events") -> str:
        opened = await self.open(worker, path)
        assert isinstance(opened, str), "admitted, though over the limit"
        return opened


@pytest.fixture
async def streams_of() -> AsyncIterator[Callable[[HubProcess], Streams]]:
    async with contextlib.AsyncExitStack() as stack:
        yield lambda hub: Streams(hub, stack)


async def admitted_soon(streams: Streams, worker: int, path: str = "/channels/c/events") -> Stream:
    """A stream admitted once a seat given back elsewhere reached the supervisor (a message on
    another worker's link: it arrives, but not at a known instant)."""
    async with asyncio.timeout(10):
        while isinstance(opened := await streams.open(worker, path), str):  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    return opened


async def test_max_client_streams_holds_across_workers(
    make_hub_process: MakeHubProcess,
    streams_of: Callable[[HubProcess], Streams],
    backplane: str,
) -> None:
    """``max_client_streams = 3``: one address holds 3 streams over both workers, not 3 on
    each; a stream that ends gives its seat back to the address on either worker."""
    hub = await make_hub_process(workers=2, max_client_streams=3, heartbeat=0.5)
    streams = streams_of(hub)
    first = await streams.live(1)
    await streams.live(1)
    await streams.live(2)
    for worker in (2, 1):
        why = await streams.refused(worker)
        assert "too many streams from your address (max_client_streams)" in why, why
    await first.close()
    await admitted_soon(streams, 2)
    assert "max_client_streams" in await streams.refused(1)


@pytest.mark.any_backplane
async def test_max_subscribers_holds_hub_wide(
    make_hub_process: MakeHubProcess, streams_of: Callable[[HubProcess], Streams]
) -> None:
    """``max_subscribers = 3`` is the hub's: a fourth stream is turned away on either worker
    (each would have room for two more alone), and ``/healthz`` counts the three."""
    hub = await make_hub_process(workers=2, max_subscribers=3, heartbeat=0.5)
    streams = streams_of(hub)
    for worker in (1, 2, 2):
        await streams.live(worker)
    for worker in (1, 2):
        why = await streams.refused(worker)
        assert "the hub is at capacity (max_subscribers reached)" in why, why
    health: dict[str, object] = {}
    async with on_worker(hub, 1) as session, asyncio.timeout(10):
        while health.get("subscribers") != 3:  # the other's counts: within a quarter second
            async with session.get(f"{hub.url}/healthz") as answer:
                health = await answer.json()
    assert health["worker_subscribers"] == 1, health


@pytest.mark.any_backplane
async def test_max_client_channels_counts_channels_new_to_the_hub(
    make_hub_process: MakeHubProcess, streams_of: Callable[[HubProcess], Streams]
) -> None:
    """``max_client_channels = 2``: an address brings two channels into being over both
    workers, not two on each; joining a channel open on the other worker makes nothing; a
    channel whose last stream (on any worker) ended is given back."""
    hub = await make_hub_process(workers=2, max_client_channels=2, heartbeat=0.5)
    streams = streams_of(hub)
    await streams.live(1, "/channels/a/events")
    on_b = await streams.live(2, "/channels/b/events")
    why = await streams.refused(2, "/channels/c/events")
    assert "too many channels from your address (max_client_channels)" in why, why
    assert "max_client_channels" in await streams.refused(1, "/events?channel=a&channel=c")
    await streams.live(2, "/channels/a/events")  # open on worker 1: joined, not made
    await on_b.close()
    await admitted_soon(streams, 1, "/channels/c/events")  # b given back: c may be made


@pytest.mark.any_backplane
async def test_a_killed_workers_seats_come_back(
    make_hub_process: MakeHubProcess, streams_of: Callable[[HubProcess], Streams]
) -> None:
    """kill -9 of the worker holding an address's every seat and its one channel: the
    supervisor gives them back when its link ends, so the address may open streams, on a
    channel of its own, again on the other worker (its counts do not stay taken forever)."""
    hub = await make_hub_process(
        workers=2, max_client_streams=2, max_client_channels=1, heartbeat=0.5
    )
    streams = streams_of(hub)
    doomed = [await streams.live(1), await streams.live(1)]
    assert "max_client_streams" in await streams.refused(2)
    os.kill(pids_of(hub)[0], signal.SIGKILL)
    for stream in doomed:
        with pytest.raises((EOFError, aiohttp.ClientPayloadError)):
            await stream.until_end(timeout=10)
    await admitted_soon(streams, 2, "/channels/d/events")
    await streams.live(2, "/channels/d/events")
    assert "max_client_streams" in await streams.refused(2, "/channels/d/events")


@pytest.mark.any_backplane
async def test_rates_and_ticket_quotas_hold_across_workers(
    make_hub_process: MakeHubProcess, streams_of: Callable[[HubProcess], Streams]
) -> None:
    """``subscribe_rate``, ``publish_rate`` and ``max_publisher_tickets`` count one address's
    (one token's) requests on both workers together: the bursts (3, 4 and 2) are spent across
    them, and the rates (one per 10 s or slower) cannot refill within the test."""
    hub = await make_hub_process(
        workers=2, heartbeat=0.5, publish_tokens=TOKEN, private_channels="private/*",
        subscribe_jwt_secret="hubwide-subscribe-secret-32-bytes-long!",
        subscribe_rate=0.01, subscribe_burst=3, publish_rate=0.01, publish_burst=4,
        max_publisher_tickets=2,
    )  # fmt: skip
    streams = streams_of(hub)
    for worker in (1, 2, 1):
        await streams.live(worker)
    why = await streams.refused(2)
    assert "too many new streams from your address (subscribe_rate)" in why, why
    async with on_worker(hub, 1) as one, on_worker(hub, 2) as two:
        statuses = []
        for session in (one, two, one, two, two):
            status, body, _ = await publish_on(session, hub, "p", "x", headers=AUTH)
            statuses.append(status)
        assert statuses == [202, 202, 202, 202, 429], (statuses, body)
        assert "publish_rate" in body["error"], body
        statuses = []
        for session in (one, two, one):
            async with session.post(f"{hub.url}/tickets", json={"channels": ["private/a"]},
                                    headers=AUTH) as answer:  # fmt: skip
                statuses.append(answer.status)
                text = await answer.text()
        assert statuses == [201, 201, 429], statuses
        assert "max_publisher_tickets" in text, text


@pytest.mark.redis
@pytest.mark.any_backplane
async def test_metrics_and_health_sum_the_workers_on_redis(
    make_redis_hub: MakeHubProcess,
    streams_of: Callable[[HubProcess], Streams],
) -> None:
    """With Redis there is no engine of events, yet ``/metrics`` and ``/healthz`` mean the
    whole hub on either worker: the supervisor sums its workers' counters and counts (not every
    process on the same Redis)."""
    hub = await make_redis_hub(workers=2, heartbeat=0.5, publish_tokens=TOKEN)
    streams = streams_of(hub)
    subscribers = [await streams.live(w, "/channels/m/events") for w in (1, 2, 2)]
    async with on_worker(hub, 1) as one, on_worker(hub, 2) as two:
        for session in (one, one, one, one, two):
            status, body, _ = await publish_on(session, hub, "m", "x", headers=AUTH)
            assert status == 202, body
        for stream in subscribers:
            await stream.take(5, timeout=10)
        wanted = {
            "hub_events_published_total": "5",
            "hub_events_delivered_total": "15",
            "hub_subscribers": "3",
            "hub_channels": "1",
        }
        for session, number in ((one, 1), (two, 2)):
            await metrics_reach(session, hub, wanted)
            async with session.get(f"{hub.url}/healthz") as answer:
                health = await answer.json()
            assert health["worker"] == number and health["subscribers"] == 3, health
            assert health["worker_subscribers"] == number, health
            assert health["backplane"]["kind"] == "redis", health
            assert health["coordinator"] == {"connected": True, "workers": 2}, health
            async with session.get(f"{hub.url}/readyz") as answer:
                assert answer.status == 200


@pytest.fixture
async def make_redis_hub() -> AsyncIterator[MakeHubProcess]:
    """``make_hub_process`` on the test Redis, under a prefix of its own (deleted after)."""
    async with hub_processes(REDIS_URL) as make:
        yield make
