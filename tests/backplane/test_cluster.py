"""Several real hub processes sharing one Redis or NATS: the guarantees of one process, across
all of them.

Every test here runs on each shared backplane (the ``engine`` fixture: "redis", "nats") and starts
real ``python -m hub serve`` processes; the outage tests also start their own Redis server (with
``--appendonly yes``, as the README requires) or nats-server (JetStream, file store) so they can
stop, kill and restart it.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import REDIS_URL
from tests.support.hubs import hub_processes, several
from tests.support.nats_server import NatsServer
from tests.support.processes import HubProcess, dies_with_us
from tests.support.sse_client import Message, Stream, open_stream
from tests.support.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.slow]

StartHubs = Callable[..., "asyncio.Future[list[HubProcess]]"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A Redis of the test's own, persisting to an append-only file so a restart keeps streams."""

    def __init__(self, directory: Path) -> None:
        self.port = _free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed (scripts/test installs it)"
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=dies_with_us,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise AssertionError("the test's Redis did not start")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)  # Redis flushes its AOF on SIGTERM
            self.process.wait(10)
        self.process = None


@pytest.fixture(
    params=[
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("nats", marks=pytest.mark.nats),
    ]
)
def engine(request: pytest.FixtureRequest) -> str:
    """The shared backplane these processes use."""
    return str(request.param)


@pytest.fixture
def shared_url(engine: str, request: pytest.FixtureRequest) -> str:
    """The run's shared server of that engine: the test Redis, or the run's nats-server."""
    return REDIS_URL if engine == "redis" else str(request.getfixturevalue("nats_url"))


@pytest.fixture
def own_store(tmp_path: Path, engine: str) -> Iterator[RedisServer | NatsServer]:
    """A server of the test's own, to stop, kill and restart (same port, same files)."""
    server: RedisServer | NatsServer = (
        RedisServer(tmp_path) if engine == "redis" else NatsServer(str(tmp_path))
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def start_hubs(shared_url: str) -> AsyncIterator[Callable[..., Any]]:
    """``await start_hubs(n, url=..., **settings)`` starts n hub processes (the shipped
    config.toml, as a user runs them) on one prefix (Redis) or one stream (NATS); ``url``
    defaults to the shared server."""
    async with hub_processes(shared_url) as make:

        async def start(count: int, url: str = shared_url, **settings: str) -> list[HubProcess]:
            return await several(make, count, config=None, backplane=url, heartbeat=0.5, **settings)

        yield start


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def publish(
    session: aiohttp.ClientSession, hub: HubProcess | Balancer, channel: str, data: Any, **kw: Any
) -> aiohttp.ClientResponse:
    async with session.post(
        f"{hub.url}/channels/{channel}/events", json={"data": data}, **kw
    ) as response:
        await response.read()
        return response


async def publish_ok(
    session: aiohttp.ClientSession,
    hub: HubProcess | Balancer,
    channel: str,
    data: Any,
    headers: dict[str, str] | None = None,
) -> str:
    url = f"{hub.url}/channels/{channel}/events"
    async with session.post(url, json={"data": data}, headers=headers) as answer:
        body = await answer.json()
        assert answer.status == 202, body
        return str(body["id"])


async def subscribe(
    session: aiohttp.ClientSession,
    hub: HubProcess | Balancer,
    path: str,
    last_id: str | None = None,
) -> Stream:
    headers = {"Last-Event-ID": last_id} if last_id else {}
    stream = await open_stream(session, f"{hub.url}{path}", headers)
    while stream.parser.retry is None:  # registered and live once the retry hint is in
        chunk = await stream.response.content.readany()
        assert chunk
        stream.parser.feed(chunk)
    return stream


def positions(messages: list[Message]) -> list[int]:
    return [int(m.id.split(":", 1)[0]) for m in messages]


def assert_exact(received: list[Message], expected_ids: list[str]) -> None:
    """Every expected id exactly once, nothing else, in increasing position order."""
    ids = [m.id for m in received]
    assert len(ids) == len(set(ids)), "an event arrived twice"
    assert sorted(ids, key=lambda i: int(i.split(":")[0])) == ids, "events out of order"
    assert set(ids) == set(expected_ids), (
        f"missing {set(expected_ids) - set(ids)}, unexpected {set(ids) - set(expected_ids)}"
    )


async def test_three_processes_deliver_every_event_once_in_order(
    start_hubs: Any, session: aiohttp.ClientSession
) -> None:
    """Subscribers on three processes get every event published on any of them, once, in order,
    on single- and multi-channel streams, with publishers racing on all three."""
    hubs = await start_hubs(3)
    singles = [await subscribe(session, hub, "/channels/orders/events") for hub in hubs]
    multis = [await subscribe(session, hub, "/events?channel=orders&channel=jobs") for hub in hubs]

    async def publisher(hub: HubProcess, tag: int) -> list[tuple[str, str]]:
        sent = []
        for n in range(25):
            channel = "orders" if n % 2 else "jobs"
            sent.append((channel, await publish_ok(session, hub, channel, {"p": tag, "n": n})))
        return sent

    sent = [pair for batch in await asyncio.gather(*(publisher(h, i) for i, h in enumerate(hubs)))
            for pair in batch]  # fmt: skip
    orders = [i for channel, i in sent if channel == "orders"]
    everything = [i for _, i in sent]
    for stream in singles:
        assert_exact(await stream.take(len(orders), timeout=10), orders)
    for stream in multis:
        assert_exact(await stream.take(len(everything), timeout=10), everything)
    for stream in singles + multis:
        assert await stream.quiet(0.3) == [], "more events than were published"
    # per publisher, events keep the order they were published in
    for stream in multis:
        seen = [m.data for m in stream.parser.messages]
        for tag in range(3):
            numbers = [int(d.split('"n":')[1].rstrip("}")) for d in seen if f'"p":{tag}' in d]
            assert numbers == sorted(numbers)


async def test_subscriber_moves_between_processes_with_last_event_id(
    start_hubs: Any, session: aiohttp.ClientSession
) -> None:
    """A multi-channel subscriber leaves process A mid-stream, resumes on B: no gap, no double."""
    a, b, c = await start_hubs(3)
    first = await subscribe(session, a, "/events?channel=red&channel=blue")
    sent = [await publish_ok(session, c, ("red", "blue")[n % 2], n) for n in range(10)]
    got = await first.take(6)
    await first.close()
    sent += [await publish_ok(session, a, ("red", "blue")[n % 2], n) for n in range(10, 20)]
    second = await subscribe(session, b, "/events?channel=red&channel=blue", got[-1].id)
    sent += [await publish_ok(session, c, ("red", "blue")[n % 2], n) for n in range(20, 25)]
    got += await second.take(len(sent) - len(got))
    assert_exact(got, sent)
    assert await second.quiet(0.3) == []


async def test_idempotency_keys_are_shared_by_processes(
    start_hubs: Any, session: aiohttp.ClientSession
) -> None:
    """A retry with the same Idempotency-Key on another process publishes nothing new."""
    a, b = await start_hubs(2)
    stream = await subscribe(session, b, "/channels/payments/events")
    headers = {"Idempotency-Key": "charge-7"}
    async with session.post(f"{a.url}/channels/payments/events", json={"data": 1},
                            headers=headers) as first:  # fmt: skip
        receipt = await first.json()
    async with session.post(f"{b.url}/channels/payments/events", json={"data": 1},
                            headers=headers) as again:  # fmt: skip
        assert again.status == 202
        assert again.headers["Idempotent-Replayed"] == "true"
        assert (await again.json())["id"] == receipt["id"]
    assert [m.id for m in await stream.quiet(0.5)] == [receipt["id"]]


async def test_cluster_wide_subscriber_counts(
    start_hubs: Any, session: aiohttp.ClientSession
) -> None:
    """/channels and a publish receipt count subscribers on every process (within a few seconds)."""
    a, b = await start_hubs(2)
    streams = [await subscribe(session, hub, "/channels/news/events") for hub in (a, b, b)]
    deadline = time.monotonic() + 8
    while True:
        async with session.get(f"{a.url}/channels") as answer:
            listed = {c["name"]: c for c in await answer.json()}
        if listed.get("news", {}).get("subscribers") == 3 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert listed["news"]["subscribers"] == 3
    async with session.post(f"{a.url}/channels/news/events", json={"data": "x"}) as answer:
        assert (await answer.json())["subscribers"] == 3
    async with session.get(f"{a.url}/metrics") as answer:
        assert "hub_cluster_subscribers 3" in await answer.text()
    for stream in streams:
        await stream.close()


async def _wait_ready(
    session: aiohttp.ClientSession, hub: HubProcess | Balancer, ready: bool
) -> float:
    started = time.monotonic()
    while time.monotonic() - started < 15:
        async with session.get(f"{hub.url}/readyz") as answer:
            if (answer.status == 200) == ready:
                return time.monotonic() - started
        await asyncio.sleep(0.1)
    raise AssertionError(f"{hub.url}/readyz never became {'ready' if ready else 'unready'}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
async def test_store_restart_loses_nothing_accepted(
    start_hubs: Any, session: aiohttp.ClientSession, own_store: RedisServer | NatsServer, sig: int
) -> None:
    """The store stops (or is SIGKILLed) mid-stream and comes back: publishes in between get 503
    with a JSON error, streams stay open (heartbeats, clocks), and every accepted event arrives
    once, in order."""
    a, b = await start_hubs(2, url=own_store.url)
    stream = await subscribe(session, a, "/events?channel=work&channel=time/UTC/1")
    accepted = [await publish_ok(session, b, "work", n) for n in range(10)]
    own_store.stop(sig)
    answer = await publish(session, b, "work", "lost?")
    assert answer.status == 503
    async with session.post(f"{b.url}/channels/work/events", json={"data": 1}) as failed:
        assert failed.status == 503
        assert "not published" in (await failed.json())["error"]
    await _wait_ready(session, a, ready=False)
    async with session.get(f"{a.url}/healthz") as health:
        assert (await health.json())["backplane"]["connected"] is False
    ticks_before = sum(m.event == "UPDATE" for m in stream.parser.messages)
    comments_before = len(stream.parser.comments)
    await asyncio.sleep(2.2)
    during = await stream.quiet(0.1)
    assert sum(m.event == "UPDATE" for m in during) + ticks_before > ticks_before, "clock stopped"
    assert len(stream.parser.comments) > comments_before, "heartbeats stopped"
    own_store.start()
    back = time.monotonic()
    await _wait_ready(session, b, ready=True)
    accepted += [await publish_ok(session, b, "work", n) for n in range(10, 20)]
    work: list[Message] = [m for m in during if m.event != "UPDATE"]
    while len(work) < len(accepted):
        message = await stream.next(timeout=10)
        if message.event != "UPDATE":
            work.append(message)
    assert time.monotonic() - back < 10
    assert_exact(work, accepted)


async def test_one_process_cut_off_from_the_store_catches_up(
    start_hubs: Any, session: aiohttp.ClientSession, shared_url: str
) -> None:
    """Only process A loses the store (through a proxy) while B keeps publishing: A's subscribers
    stay connected, and within 5 s of the link's return they get every event exactly once."""
    scheme, _, rest = shared_url.partition("://")
    host, port = rest.split("/")[0].split(":")
    proxy = TcpProxy(host, int(port))
    await proxy.start()
    try:
        path = "/0" if scheme == "redis" else ""
        (a,) = await start_hubs(1, url=f"{scheme}://127.0.0.1:{proxy.port}{path}")
        (b,) = await start_hubs(1)
        stream = await subscribe(session, a, "/channels/feed/events")
        accepted = [await publish_ok(session, b, "feed", n) for n in range(5)]
        assert_exact(await stream.take(5), accepted)
        proxy.cut()
        await _wait_ready(session, a, ready=False)
        accepted += [await publish_ok(session, b, "feed", n) for n in range(5, 30)]
        comments = len(stream.parser.comments)
        assert await stream.quiet(1.0) == []
        assert len(stream.parser.comments) > comments, "the stream went quiet: no heartbeats"
        proxy.restore()
        restored = time.monotonic()
        caught_up = await stream.take(25, timeout=10)
        assert time.monotonic() - restored < 5
        assert_exact(caught_up, accepted[5:])
        assert await stream.quiet(0.3) == []
    finally:
        await proxy.close()


async def test_killed_process_subscribers_resume_elsewhere(
    start_hubs: Any, session: aiohttp.ClientSession
) -> None:
    """SIGKILL one process mid-stream: its subscriber reconnects to another and resumes exactly."""
    a, b = await start_hubs(2)
    stream = await subscribe(session, a, "/events?channel=k1&channel=k2")
    sent = [await publish_ok(session, b, ("k1", "k2")[n % 2], n) for n in range(8)]
    got = await stream.take(8)
    a.signal(signal.SIGKILL)
    with pytest.raises((EOFError, aiohttp.ClientPayloadError, aiohttp.ClientConnectionError)):
        await stream.next(timeout=10)
    sent += [await publish_ok(session, b, ("k1", "k2")[n % 2], n) for n in range(8, 16)]
    again = await subscribe(session, b, "/events?channel=k1&channel=k2", stream.last_event_id)
    got += await again.take(8)
    assert_exact(got, sent)
    assert await again.quiet(0.3) == []


@dataclass
class Balancer:
    """nginx running deploy/nginx.conf; has a ``url`` like a hub process."""

    url: str
    process: subprocess.Popen[bytes]


def _start_nginx(directory: Path, hubs: list[HubProcess]) -> Balancer:
    """deploy/nginx.conf with its upstream pointed at the given hubs and a free local port."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(binary).exists(), "nginx is not installed (scripts/test installs it)"
    port = _free_port()
    conf = (Path(__file__).parents[2] / "deploy" / "nginx.conf").read_text()
    upstreams = "".join(f"        server {hub.url.split('//')[1]};\n" for hub in hubs)
    lines = [line for line in conf.splitlines(keepends=True) if "server hub" not in line]
    conf = "".join(lines).replace("least_conn;\n", "least_conn;\n" + upstreams)
    conf = conf.replace("listen 8080;", f"listen 127.0.0.1:{port};")
    conf = conf.replace("worker_processes auto;", "worker_processes 1;")
    (directory / "nginx.conf").write_text(conf)
    process = subprocess.Popen(
        [binary, "-p", str(directory), "-c", str(directory / "nginx.conf"), "-g",
         f"daemon off; pid {directory}/nginx.pid; error_log {directory}/error.log;"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=dies_with_us,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return Balancer(f"http://127.0.0.1:{port}", process)
        assert process.poll() is None, (directory / "error.log").read_text()
        time.sleep(0.05)
    process.kill()
    raise AssertionError("nginx did not start")


@pytest.fixture
async def nginx(tmp_path: Path) -> AsyncIterator[Callable[[list[HubProcess]], Any]]:
    started: list[Balancer] = []

    async def start(hubs: list[HubProcess]) -> Balancer:
        started.append(await asyncio.to_thread(_start_nginx, tmp_path, hubs))
        return started[-1]

    yield start
    for balancer in started:
        balancer.process.send_signal(signal.SIGQUIT)
        try:
            balancer.process.wait(5)
        except subprocess.TimeoutExpired:
            balancer.process.kill()
            balancer.process.wait(5)


async def test_behind_the_shipped_nginx_config(
    start_hubs: Any, nginx: Any, session: aiohttp.ClientSession
) -> None:
    """deploy/nginx.conf in front of two hubs: events stream through at once (no buffering),
    publishes go through, and a stream resumed through the balancer is exact. Through a proxy
    nobody is a loopback client, so publishing there takes a token (tokenless: 403)."""
    token = "nginx-test-token-0123456789"
    hubs = await start_hubs(2, publish_tokens=token, trusted_proxies="127.0.0.1")
    balancer = await nginx(hubs)
    stream = await subscribe(session, balancer, "/channels/lb/events")
    started = time.monotonic()
    first = await publish_ok(session, balancer, "lb", "one", {"Authorization": f"Bearer {token}"})
    assert (await stream.next(timeout=2)).id == first
    assert time.monotonic() - started < 1, "the event waited in a buffer"
    await stream.close()
    bearer = {"Authorization": f"Bearer {token}"}
    missed = [await publish_ok(session, hubs[1], "lb", n, bearer) for n in range(5)]
    again = await subscribe(session, balancer, "/channels/lb/events", first)
    assert_exact(await again.take(5), missed)
