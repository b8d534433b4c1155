"""Limits per client: publish and subscribe rates (token buckets), per-address caps on streams
and on channels brought into being, and the client address behind a trusted proxy.

Over a publish limit: ``429`` JSON with ``Retry-After``. Over a subscribe limit or cap: ``200`` +
a jittered ``retry:`` + a clean end, never an error an EventSource gives up on. Several client
addresses come from binding the client's sockets to other loopback addresses (127.0.0.2, ...):
real, distinct peers, no header involved.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from hub.limits import MAX_BUCKETS, TokenBuckets
from tests.conftest import HubServer, MakeHub
from tests.limits.test_limits import refused
from tests.support.sse_client import Stream, open_stream

TOKEN = "rate-token-0123456789"
OTHER = "rate-token-9876543210"


@pytest.fixture
async def client_at() -> AsyncIterator[Callable[[str], aiohttp.ClientSession]]:
    """Sessions whose connections come from a given loopback address (127.0.0.2, ...)."""
    sessions: list[aiohttp.ClientSession] = []

    def make(address: str) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(local_addr=(address, 0), limit=0)
        session = aiohttp.ClientSession(connector=connector)
        sessions.append(session)
        return session

    yield make
    await Stream.close_all()
    for session in sessions:
        await session.close()


async def post(
    hub: HubServer, body: Any, path: str = "/channels/c/events", **kw: Any
) -> tuple[int, dict[str, Any], Any]:
    session = kw.pop("session", hub.session)
    async with session.post(f"{hub.url}{path}", json=body, **kw) as response:
        assert response.content_type == "application/json"
        return response.status, dict(response.headers), await response.json()


async def stream_from(hub: HubServer, session: aiohttp.ClientSession, path: str) -> Stream:
    """A stream through ``session``: live (retry hint read) or ended (refused)."""
    stream = await open_stream(session, f"{hub.url}{path}")
    hub.streams.append(stream)
    assert stream.response.status == 200
    async with asyncio.timeout(5):
        while stream.parser.retry is None:
            chunk = await stream.response.content.readany()
            assert chunk, "the stream ended before its retry hint"
            stream.parser.feed(chunk)
    return stream


async def is_refused(stream: Stream) -> bool:
    """Whether the hub ended this stream right after its retry hint (a refusal)."""
    try:
        return await stream.until_end(timeout=0.5) == [] and stream.ended
    except TimeoutError:
        return False  # still open: a live stream


# -- publishing --------------------------------------------------------------------------------


async def test_publish_rate_429_with_retry_after(make_hub: MakeHub, backplane: str) -> None:
    """Past the burst a publisher gets 429 JSON naming publish_rate, with Retry-After; nothing
    was published; its tokens come back at the configured rate."""
    # One token a second: the three publishes and the refused one must fit in the second before
    # a token comes back, which 20 a second (50 ms) did not on a loaded machine with NATS.
    hub = await make_hub(publish_rate=1, publish_burst=3)
    stream = await hub.subscribe("/channels/c/events")
    ids = [(await hub.publish("c", n))["id"] for n in range(3)]
    status, headers, answer = await post(hub, {"data": "too many"})
    assert status == 429, answer
    assert "publish_rate" in answer["error"] and "publish_burst" in answer["error"]
    assert int(headers["Retry-After"]) >= 1
    assert [m.id for m in await stream.take(3)] == ids
    await asyncio.sleep(1.05)  # one a second: a token back
    after = await hub.publish("c", "later")
    assert (await stream.next()).id == after["id"], "the refused event was not published"


async def test_publish_rate_per_token(make_hub: MakeHub, backplane: str) -> None:
    """Each token has its own bucket; a batch counts its events, and a batch larger than the
    burst passes when the bucket is full, then the publisher waits."""
    hub = await make_hub(publish_tokens=[TOKEN, OTHER], publish_rate=0.5, publish_burst=4)
    mine = {"Authorization": f"Bearer {TOKEN}"}
    theirs = {"Authorization": f"Bearer {OTHER}"}
    batch = [{"channel": "c", "data": n} for n in range(10)]
    status, _, answer = await post(hub, batch, "/publish", headers=mine)
    assert status == 202, answer
    status, headers, answer = await post(hub, {"data": 1}, headers=mine)
    assert status == 429 and int(headers["Retry-After"]) >= 2, answer
    status, headers, answer = await post(hub, batch[:2], "/publish", headers=mine)
    assert status == 429 and "Retry-After" in headers, answer
    status, _, answer = await post(hub, {"data": 1}, headers=theirs)
    assert status == 202, answer


@pytest.mark.any_backplane
async def test_publish_rate_per_address_without_tokens(
    make_hub: MakeHub, client_at: Callable[[str], aiohttp.ClientSession]
) -> None:
    """Without tokens the bucket is the client address: another address is not slowed."""
    hub = await make_hub(publish_rate=0.1, publish_burst=2)
    for _ in range(2):
        assert (await post(hub, {"data": 1}))[0] == 202
    assert (await post(hub, {"data": 1}))[0] == 429
    assert (await post(hub, {"data": 1}, session=client_at("127.0.0.2")))[0] == 202


@pytest.mark.any_backplane
async def test_publish_rate_zero_is_off(make_hub: MakeHub) -> None:
    """``publish_rate = 0`` turns the limit off (it does not mean "no publish at all"): twenty
    publishes in a row from one address, past a burst of 1, are all accepted, none is told to
    come back later, and all reach a subscriber."""
    hub = await make_hub(publish_rate=0, publish_burst=1)
    stream = await hub.subscribe("/channels/c/events")
    ids = []
    for n in range(20):
        status, headers, answer = await post(hub, {"data": n})
        assert status == 202 and "Retry-After" not in headers, answer
        ids.append(answer["id"])
    assert [(await stream.next()).id for _ in ids] == ids


# -- subscribing -------------------------------------------------------------------------------


@pytest.mark.any_backplane
async def test_subscribe_rate_refuses_politely(
    make_hub: MakeHub, client_at: Callable[[str], aiohttp.ClientSession]
) -> None:
    """Past subscribe_burst new streams from one address get 200 + retry: + end, with a retry
    no sooner than the bucket allows; other addresses are not affected."""
    hub = await make_hub(subscribe_rate=0.1, subscribe_burst=2, retry=1000)
    await hub.subscribe("/channels/a/events")
    await hub.subscribe("/channels/a/events")
    extra = await refused(hub, "/channels/a/events")
    assert extra.parser.retry is not None and extra.parser.retry >= 10_000  # 1 token: 10 s
    assert any("too many new streams" in c for c in extra.parser.comments)
    other = await stream_from(hub, client_at("127.0.0.2"), "/channels/a/events")
    assert not other.ended
    receipt = await hub.publish("a", "x")
    assert (await other.next()).id == receipt["id"]


@pytest.mark.any_backplane
async def test_max_client_streams(
    make_hub: MakeHub, client_at: Callable[[str], aiohttp.ClientSession]
) -> None:
    """One address holds at most max_client_streams; the rest of max_subscribers stays open
    to other addresses; a stream that ends frees its place."""
    hub = await make_hub(max_subscribers=5, max_client_streams=3, subscribe_rate=0)
    mine = [await hub.subscribe("/channels/a/events") for _ in range(3)]
    extra = await refused(hub, "/channels/a/events")
    assert any("max_client_streams" in c for c in extra.parser.comments)
    other = client_at("127.0.0.2")
    theirs = [await stream_from(hub, other, "/channels/a/events") for _ in range(2)]
    assert not any(s.ended for s in theirs)
    await mine[0].close()
    for _ in range(100):  # the hub notices the close within a few loop passes
        again = await stream_from(hub, hub.session, "/channels/a/events")
        if not await is_refused(again):
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("the freed place was never given again")


@pytest.mark.any_backplane
async def test_max_client_channels_leaves_room_for_others(
    make_hub: MakeHub, client_at: Callable[[str], aiohttp.ClientSession]
) -> None:
    """The attack of the issue, scaled down: one address opening streams of new channels is
    stopped at max_client_channels, so max_channels stays open to other addresses; joining
    channels that exist costs nothing; a channel that closes is no longer counted."""
    hub = await make_hub(
        max_channels=20, max_client_channels=10, max_stream_channels=5, subscribe_rate=0
    )

    def many(first: int) -> str:
        return "/events?" + "&".join(f"channel=x{n}" for n in range(first, first + 5))

    held = [await hub.subscribe(many(0)), await hub.subscribe(many(5))]
    extra = await refused(hub, many(10))
    assert any("max_client_channels" in c for c in extra.parser.comments)
    joined = await hub.subscribe(many(0))  # existing channels: still fine
    other = client_at("127.0.0.2")
    theirs = await stream_from(hub, other, many(100))
    assert not await is_refused(theirs)
    for stream in [*held, joined]:
        await stream.close()
    for _ in range(100):
        again = await stream_from(hub, hub.session, many(10))
        if not await is_refused(again):
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("channels that closed were still counted against the client")


# -- behind a proxy ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trusted", "first", "second", "second_refused"),
    [
        ([], "198.51.100.1", "198.51.100.2", True),  # not trusted: both are 127.0.0.1
        (["127.0.0.1"], "198.51.100.1", "198.51.100.2", False),
        (["127.0.0.0/8"], "198.51.100.1", "198.51.100.1", True),
        # the client wrote the left part: the right-most untrusted hop is what counts
        (["127.0.0.1"], "198.51.100.1", "203.0.113.7, 198.51.100.1", True),
        # a chain of trusted proxies is walked through
        (["127.0.0.1", "10.0.0.0/8"], "198.51.100.1", "198.51.100.1, 10.1.2.3", True),
        (["127.0.0.1", "10.0.0.0/8"], "198.51.100.1", "198.51.100.2, 10.1.2.3", False),
    ],
    ids=("untrusted", "two-clients", "same-client", "spoofed-left", "chain-same", "chain-other"),
)
@pytest.mark.any_backplane
async def test_forwarded_for_from_trusted_proxies_only(
    make_hub: MakeHub, trusted: list[str], first: str, second: str, second_refused: bool
) -> None:
    """X-Forwarded-For names the client only when the peer is a trusted proxy, and then its
    right-most untrusted hop: seen here through the per-address subscribe limit (burst 1)."""
    hub = await make_hub(trusted_proxies=trusted, subscribe_rate=0.01, subscribe_burst=1)
    one = await open_stream(hub.session, f"{hub.url}/channels/a/events", {"X-Forwarded-For": first})
    hub.streams.append(one)
    one.parser.feed(await one.response.content.readany())
    assert one.parser.retry is not None and not await is_refused(one)
    two = await open_stream(
        hub.session, f"{hub.url}/channels/a/events", {"X-Forwarded-For": second}
    )
    hub.streams.append(two)
    two.parser.feed(await two.response.content.readany())
    assert await is_refused(two) is second_refused, two.parser.comments


def test_trusted_proxies_from_the_environment() -> None:
    """HUB_TRUSTED_PROXIES is a comma-separated list; a bad entry names the key."""
    from hub.config import ConfigError, load

    config = load(env={"HUB_TRUSTED_PROXIES": "10.0.0.0/8, ::1,192.0.2.7"}, path=os.devnull)
    assert config.trusted_proxies == ("10.0.0.0/8", "::1", "192.0.2.7")
    with pytest.raises(ConfigError, match=r"trusted_proxies.*'10\.0\.0\.300' is not an IP"):
        load(env={"HUB_TRUSTED_PROXIES": "10.0.0.300"}, path=os.devnull)


# -- memory of the limits ----------------------------------------------------------------------


def test_buckets_are_bounded() -> None:
    """However many keys come by (clients rotating addresses), at most MAX_BUCKETS buckets are
    kept, and a key that is still held back is still held back while there is room."""
    buckets = TokenBuckets(rate=0.001, burst=2)
    assert buckets.take("held", 2) == 0.0
    assert buckets.take("held") > 0
    for n in range(3 * MAX_BUCKETS):
        buckets.take(f"passer-by-{n}")
        assert len(buckets) <= MAX_BUCKETS
    fresh = TokenBuckets(rate=0.001, burst=2)
    assert fresh.take("held", 2) == 0.0
    for n in range(MAX_BUCKETS // 2):
        fresh.take(f"passer-by-{n}")
    assert fresh.take("held") > 0, "a bucket was forgotten while there was room"


def test_every_limit_key_from_the_environment() -> None:
    """Each new key can be set as HUB_<KEY>, with its type (numbers, lists); bad values name it."""
    from hub.config import ConfigError, load

    env = {
        "HUB_PUBLISH_RATE": "2.5",
        "HUB_PUBLISH_BURST": "7",
        "HUB_SUBSCRIBE_RATE": "0",
        "HUB_SUBSCRIBE_BURST": "3",
        "HUB_MAX_CLIENT_STREAMS": "4",
        "HUB_MAX_CLIENT_CHANNELS": "0",
        "HUB_TRUSTED_PROXIES": "127.0.0.1,fd00::/8",
        "HUB_MAX_HISTORY_BYTES": "1048576",
        "HUB_IDLE_TIMEOUT": "12",
        "HUB_BODY_TIMEOUT": "4.5",
        "HUB_TCP_USER_TIMEOUT": "9",
    }
    config = load(env=env, path=os.devnull)
    assert (config.publish_rate, config.publish_burst) == (2.5, 7)
    assert (config.subscribe_rate, config.subscribe_burst) == (0, 3)
    assert (config.max_client_streams, config.max_client_channels) == (4, 0)
    assert config.trusted_proxies == ("127.0.0.1", "fd00::/8")
    assert config.max_history_bytes == 1048576
    assert (config.idle_timeout, config.body_timeout, config.tcp_user_timeout) == (12, 4.5, 9)
    for key, bad in (("PUBLISH_RATE", "-1"), ("SUBSCRIBE_BURST", "0"), ("IDLE_TIMEOUT", "x")):
        with pytest.raises(ConfigError, match=f"HUB_{key}"):
            load(env={f"HUB_{key}": bad}, path=os.devnull)


@pytest.mark.any_backplane
async def test_the_attack_of_the_issue_with_the_public_profile(
    make_hub: MakeHub, client_at: Callable[[str], aiohttp.ClientSession]
) -> None:
    """One anonymous address opening 100 streams of 100 new channels each (which filled
    max_channels before): with the public profile it brings 1000 channels into being and is
    refused the rest, politely; another address still subscribes to new channels."""
    hub = await make_hub(profile="public", subscribe_rate=0)
    config = hub.config
    assert (config.max_channels, config.max_client_channels) == (10000, 1000)
    attacker = client_at("127.0.0.3")
    live = 0
    for stream_number in range(100):
        names = "&".join(f"channel=s{stream_number}-{n}" for n in range(100))
        stream = await stream_from(hub, attacker, f"/events?{names}")
        live += not await is_refused(stream)
    assert live == config.max_client_channels // 100
    assert hub.hub.census.channel_count == config.max_client_channels
    victim = await stream_from(hub, client_at("127.0.0.4"), "/events?channel=mine&channel=ours")
    assert not await is_refused(victim)
    receipt = await hub.publish("mine", "still open to others")
    assert (await victim.next()).id == receipt["id"]
