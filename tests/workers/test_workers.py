"""A hub of several workers (``workers = 2``): real ``python -m hub serve`` supervisors and
their worker processes, the guarantees of one process across all of them.

Each test starts one hub of two workers on the memory backplane (the engine in the supervisor:
hub/supervisor.py, hub/backplane/engine_server.py) and reaches a chosen worker by opening
connections until one lands on it (tests/support/workers.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from tests.conftest import MakeHubProcess
from tests.support.processes import HubProcess, clean_env, run_to_end
from tests.support.sse_client import Message, Stream, open_stream
from tests.support.workers import (
    WORKER,
    close_sessions,
    metrics_reach,
    on_worker,
    pids_of,
    publish_on,
    stream_on,
)

pytestmark = [pytest.mark.any_backplane, pytest.mark.slow]

TOKEN = "workers-publish-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SECRET = "workers-subscribe-secret-32-bytes-long!"


@pytest.fixture
async def two(make_hub_process: MakeHubProcess) -> AsyncIterator[HubProcess]:
    """A hub of two workers on the memory backplane, publishing with a token."""
    hub = await make_hub_process(
        workers=2, heartbeat=0.5, publish_tokens=TOKEN, private_channels="private/*",
        subscribe_jwt_secret=SECRET,
    )  # fmt: skip
    assert "workers: 2" in hub.output, hub.output
    yield hub
    await close_sessions()


def assert_exact(received: list[Message], expected_ids: list[str]) -> None:
    """Every expected id exactly once, nothing else, in increasing position order."""
    ids = [m.id for m in received]
    assert len(ids) == len(set(ids)), "an event arrived twice"
    assert sorted(ids, key=lambda i: int(i.split(":")[0])) == ids, "events out of order"
    assert set(ids) == set(expected_ids), (
        f"missing {set(expected_ids) - set(ids)}, unexpected {set(ids) - set(expected_ids)}"
    )


async def publish_ok(session: aiohttp.ClientSession, hub: HubProcess, channel: str,
                     data: Any, worker: int) -> str:  # fmt: skip
    status, body, landed = await publish_on(session, hub, channel, data, headers=AUTH)
    assert status == 202 and landed == worker, (status, body, landed)
    return str(body["id"])


async def test_a_publish_on_either_worker_reaches_every_worker_once_in_order(
    two: HubProcess,
) -> None:
    """Subscribers on both workers get every event published on either, once, in position
    order, on single- and multi-channel streams, with publishers racing on both."""
    async with on_worker(two, 1) as one, on_worker(two, 2) as other:
        singles = [await stream_on(s, two, n, "/channels/orders/events")
                   for s, n in ((one, 1), (other, 2))]  # fmt: skip
        multis = [await stream_on(s, two, n, "/events?channel=orders&channel=jobs")
                  for s, n in ((one, 1), (other, 2))]  # fmt: skip

        async def publisher(session: aiohttp.ClientSession, worker: int) -> list[tuple[str, str]]:
            sent = []
            for n in range(30):
                channel = "orders" if n % 2 else "jobs"
                sent.append((channel, await publish_ok(session, two, channel, n, worker)))
            return sent

        batches = await asyncio.gather(publisher(one, 1), publisher(other, 2))
    sent = [pair for batch in batches for pair in batch]
    orders = [i for channel, i in sent if channel == "orders"]
    everything = [i for _, i in sent]
    for stream in singles:
        assert_exact(await stream.take(len(orders), timeout=10), orders)
    for stream in multis:
        assert_exact(await stream.take(len(everything), timeout=10), everything)
    for stream in singles + multis:
        assert await stream.quiet(0.3) == [], "more events than were published"


async def test_last_event_id_resumes_exactly_on_the_other_worker(two: HubProcess) -> None:
    """A multi-channel stream leaves worker 1 mid-way and resumes on worker 2: no gap, no
    double (one history, in the engine)."""
    async with on_worker(two, 1) as one:
        first = await stream_on(one, two, 1, "/events?channel=red&channel=blue")
        sent = [await publish_ok(one, two, ("red", "blue")[n % 2], n, 1) for n in range(10)]
        got = await first.take(6)
        await first.close()
        sent += [await publish_ok(one, two, ("red", "blue")[n % 2], n, 1) for n in range(10, 20)]
        second = await stream_on(
            one, two, 2, "/events?channel=red&channel=blue", **{"Last-Event-ID": got[-1].id}
        )
        sent += [await publish_ok(one, two, ("red", "blue")[n % 2], n, 1) for n in range(20, 25)]
    got += await second.take(len(sent) - len(got), timeout=10)
    assert_exact(got, sent)
    assert await second.quiet(0.3) == []


async def test_a_killed_worker_loses_nothing_acknowledged_and_is_replaced(
    two: HubProcess,
) -> None:
    """kill -9 of worker 1 while it publishes: every event it acknowledged reaches the
    subscriber on worker 2, once and in order; its own subscriber resumes on the other worker
    exactly; the supervisor starts a new worker 1, which serves again."""
    pids = pids_of(two)
    acknowledged: list[str] = []
    async with on_worker(two, 2) as other:
        watcher = await stream_on(other, two, 2, "/channels/k/events")
        async with on_worker(two, 1) as one:
            doomed = await stream_on(one, two, 1, "/channels/k/events")

            async def keep_publishing() -> None:
                n = 0
                while True:
                    acknowledged.append(await publish_ok(one, two, "k", n, 1))
                    n += 1

            publishing = asyncio.ensure_future(keep_publishing())
            reading = asyncio.ensure_future(read_to_end(doomed))  # what it got, as it comes
            await until(lambda: len(acknowledged) >= 20 and len(doomed.parser.messages) >= 10)
            os.kill(pids[0], signal.SIGKILL)
            with pytest.raises((aiohttp.ClientError, AssertionError, KeyError)):
                await publishing  # the connection went with the worker
        with pytest.raises((EOFError, aiohttp.ClientPayloadError, aiohttp.ClientConnectionError)):
            await reading
        # what worker 2 received: every acknowledged event (and maybe the one in flight)
        seen = await watcher.take(len(acknowledged), timeout=10)
        seen += await watcher.quiet(0.5)
        assert_exact(seen[: len(acknowledged)], acknowledged)
        stored = [m.id for m in seen]
        # the subscriber of the dead worker resumes on the living one, exactly
        resumed = await stream_on(
            other, two, 2, "/channels/k/events", **{"Last-Event-ID": doomed.last_event_id}
        )
        after = [await publish_ok(other, two, "k", "after", 2)]
        missing = len(stored) + 1 - len(doomed.parser.messages)
        got = doomed.parser.messages + await resumed.take(missing, timeout=10)
        assert_exact(got, stored + after)
    await until(lambda: two.output.count("serving http://") == 3)
    assert "worker 1 (pid" in two.output and "starting another" in two.output
    async with on_worker(two, 1) as again:
        await publish_ok(again, two, "k", "back", 1)


async def test_sigterm_drains_every_worker(two: HubProcess) -> None:
    """SIGTERM to the supervisor: every worker's streams end cleanly (their clients reconnect
    elsewhere), each worker and then the supervisor log their stop, the exit code is 0."""
    async with on_worker(two, 1) as one, on_worker(two, 2) as other:
        streams = [await stream_on(s, two, n, "/channels/bye/events")
                   for s, n in ((one, 1), (other, 2), (one, 1), (other, 2))]  # fmt: skip
        sent = await publish_ok(one, two, "bye", "last", 1)
    two.signal(signal.SIGTERM)
    for stream in streams:
        assert [m.id for m in await stream.until_end(timeout=15)] == [sent]
    assert await two.wait(30) == 0
    assert two.output.count("ssehub stopped (") == 3, two.output
    assert "Traceback" not in two.output


async def test_tickets_deletion_and_closing_across_workers(two: HubProcess) -> None:
    """A ticket issued on worker 1 opens a stream on worker 2, once; a deletion on worker 1
    closes worker 2's stream and refuses publishes on worker 2; a close likewise."""
    async with on_worker(two, 1) as one, on_worker(two, 2) as other:
        async with one.post(f"{two.url}/tickets", json={"channels": ["private/a"]},
                            headers=AUTH) as answer:  # fmt: skip
            assert answer.status == 201
            ticket = (await answer.json())["ticket"]
        # over a connection known to land on worker 2: a try elsewhere would spend the ticket
        async with on_worker(two, 2) as pinned:
            stream = await open_stream(
                pinned, f"{two.url}/channels/private/a/events?ticket={ticket}"
            )
            assert stream.response.headers[WORKER] == "2"
            await read_head(stream)
            for session in (one, other):
                url = f"{two.url}/channels/private/a/events?ticket={ticket}"
                async with session.get(url) as no:
                    assert no.status == 403, await no.text()
            sent = await publish_ok(one, two, "private/a", "before", 1)
            async with one.delete(f"{two.url}/channels/private/a", headers=AUTH) as answer:
                assert answer.status == 200, await answer.text()
            *events, end = await stream.until_end(timeout=10)
            assert [e.id for e in events] == [sent] and end.event == "close"
        status, body, _ = await publish_on(other, two, "private/a", "after", headers=AUTH)
        assert status == 410, body
        closing = await stream_on(other, two, 2, "/channels/done/events")
        kept = await publish_ok(one, two, "done", "last", 1)
        async with one.post(f"{two.url}/channels/done/close", headers=AUTH) as answer:
            assert answer.status == 200, await answer.text()
        *events, end = await closing.until_end(timeout=10)
        assert [e.id for e in events] == [kept] and end.event == "close"
        status, body, _ = await publish_on(other, two, "done", "more", headers=AUTH)
        assert status == 409 and "is closed" in body["error"], body


async def test_metrics_and_health_show_the_whole_hub(two: HubProcess) -> None:
    """Whichever worker a scrape lands on, /metrics counts every worker's publishes and
    deliveries (a second old at most) and every worker's subscribers; /healthz names the
    worker and the engine's two links."""
    async with on_worker(two, 1) as one, on_worker(two, 2) as other:
        streams = [await stream_on(s, two, n, "/channels/m/events")
                   for s, n in ((one, 1), (other, 2), (other, 2))]  # fmt: skip
        for n in range(4):
            await publish_ok(one, two, "m", n, 1)
        await publish_ok(other, two, "m", 4, 2)
        for stream in streams:
            await stream.take(5)
        wanted = {
            "hub_events_published_total": "5",
            "hub_events_delivered_total": "15",
            "hub_subscribers": "3",
        }
        for session, number in ((one, 1), (other, 2)):
            await metrics_reach(session, two, wanted)
            async with session.get(f"{two.url}/healthz") as answer:
                health = await answer.json()
            assert health["worker"] == number and health["workers"] == 2
            assert health["subscribers"] == 3 and health["worker_subscribers"] == number
            assert health["backplane"]["kind"] == "memory" and health["backplane"]["workers"] == 2
            assert health["backplane"]["engine"].endswith("engine.sock")
            async with session.get(f"{two.url}/readyz") as answer:
                assert answer.status == 200


async def test_the_workers_end_with_their_supervisor(two: HubProcess) -> None:
    """kill -9 of the supervisor: the kernel ends every worker (their engine is gone)."""
    pids = pids_of(two)
    two.signal(signal.SIGKILL)
    await two.wait(10)
    await until(lambda: not any(_alive(pid) for pid in pids))


async def read_head(stream: Stream) -> None:
    while stream.parser.retry is None:  # registered and live once the retry hint is in
        chunk = await stream.response.content.readany()
        assert chunk, "the stream ended before its retry hint"
        stream.parser.feed(chunk)


async def read_to_end(stream: Stream) -> None:
    while True:
        await stream.next(timeout=30)


async def until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll ``condition`` (what it watches is a process or a socket: nothing to await)."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


async def test_a_taken_port_stops_the_hub_with_one_line() -> None:
    """Another process listening on the port: the hub of workers exits as one process does,
    naming the port, instead of joining that process's port with SO_REUSEPORT."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code, out, err = await run_to_end(
            sys.executable, "-m", "hub", "serve", "--config", os.devnull, "--workers", "2",
            "--port", str(port), env=clean_env(), timeout=30,
        )  # fmt: skip
    assert code != 0
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in err, (out, err)


async def test_on_every_backplane_a_publish_reaches_the_other_worker(
    make_hub_process: MakeHubProcess, backplane: str
) -> None:
    """With Redis or NATS the workers use the store directly (the supervisor's engine only
    coordinates: limits and sums), as separate hub processes do; with memory, the engine.
    Either way a publish on one worker reaches a subscriber on the other, and a resume there is
    exact."""
    hub = await make_hub_process(workers=2, publish_tokens=TOKEN)
    engine = "memory history in the engine" in hub.output
    assert engine == (backplane == "memory"), hub.output
    async with on_worker(hub, 1) as one, on_worker(hub, 2) as other:
        stream = await stream_on(other, hub, 2, "/channels/shared/events")
        sent = [await publish_ok(one, hub, "shared", n, 1) for n in range(5)]
        got = await stream.take(3, timeout=10)
        await stream.close()
        resumed = await stream_on(
            one, hub, 1, "/channels/shared/events", **{"Last-Event-ID": got[-1].id}
        )
        got += await resumed.take(2, timeout=10)
    assert_exact(got, sent)
    await close_sessions()


async def test_a_durable_stream_across_workers(two: HubProcess) -> None:
    """A Durable Stream created on worker 1, appended to on worker 2, read on worker 1, closed
    on worker 2 and refused an append on worker 1: its state is the engine's."""
    url = f"{two.url}/v1/stream/w/orders"
    json_type = {"Content-Type": "application/json", **AUTH}
    async with on_worker(two, 1) as one, on_worker(two, 2) as other:
        async with one.put(url, headers=json_type) as answer:
            assert answer.status == 201, await answer.text()
        async with other.post(url, headers=json_type, data='[{"id": 1}, {"id": 2}]') as answer:
            assert answer.status in (200, 204), await answer.text()
        async with one.get(url) as answer:
            assert await answer.json() == [{"id": 1}, {"id": 2}]
        closing = {**json_type, "Stream-Closed": "true"}
        async with other.post(url, headers=closing, data='{"id": 3}') as answer:
            assert answer.status in (200, 204), await answer.text()
        async with one.post(url, headers=json_type, data='{"id": 4}') as answer:
            assert answer.status == 409, await answer.text()


async def test_tag_filters_and_since_across_workers(two: HubProcess) -> None:
    """Tags published on worker 1 filter a stream on worker 2, live and in a replay by time
    (``since=``, answered by the engine): the engine carries an event's tags."""
    async with on_worker(two, 1) as one, on_worker(two, 2) as other:
        live = await stream_on(other, two, 2, "/channels/q/events?tag=region:eu")
        sent = []
        for n, region in enumerate(("eu", "us", "eu")):
            body = {"data": n, "tags": {"region": region}}
            url = f"{two.url}/channels/q/events"
            async with one.post(url, json=body, headers=AUTH) as answer:
                assert answer.status == 202, await answer.text()
                sent.append(((await answer.json())["id"], region))
        eu = [ident for ident, region in sent if region == "eu"]
        assert [m.id for m in await live.take(2, timeout=10)] == eu
        replay = await stream_on(
            other, two, 2, "/channels/q/events?tag=region:eu&since=2000-01-01T00:00:00Z"
        )
        got = await replay.take(3, timeout=10)  # before the engine's origin: a reset first
        assert [m.event for m in got] == ["reset", "message", "message"]
        assert [m.id for m in got[1:]] == eu
        assert await replay.quiet(0.3) == []


async def test_big_frames_and_bursts_cross_the_engine_whole(two: HubProcess) -> None:
    """The engine's wire cut at any byte: a batch of large events (its request, and the history
    pages of about 256 KiB, longer than one socket read) and a burst of concurrent publishes
    on both workers (many frames in one read, both ways), with text that is not ASCII, arrive
    on the other worker exact."""
    big = [f"{n:04d}-é✓-" + "x" * 3000 for n in range(200)]
    small = [f"{n}-ü" for n in range(300)]
    async with on_worker(two, 1) as one:
        live = await stream_on(one, two, 2, "/channels/wide/events")
        items = [{"channel": "wide", "data": text} for text in big]
        async with one.post(f"{two.url}/publish", json=items, headers=AUTH) as answer:
            assert answer.status == 202, await answer.text()
            ids = [receipt["id"] for receipt in (await answer.json())["events"]]
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=30)) as burst:

            async def publish(text: str) -> str:
                url = f"{two.url}/channels/wide/events"
                async with burst.post(url, json={"data": text}, headers=AUTH) as answer:
                    assert answer.status == 202, await answer.text()
                    return str((await answer.json())["id"])

            ids += await asyncio.gather(*(publish(text) for text in small))
        replay = await stream_on(one, two, 2, "/channels/wide/events?from=start")
    for stream in (live, replay):
        got = await stream.take(len(ids), timeout=15)
        assert_exact(got, ids)
        assert [m.data for m in got[: len(big)]] == big
        assert sorted(m.data for m in got[len(big) :]) == sorted(small)
        assert await stream.quiet(0.3) == []
