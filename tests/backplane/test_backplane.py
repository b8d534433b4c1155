"""The backplane contract (hub/backplane/__init__.py), checked against every implementation.

No HTTP and no hub: each test builds backplanes with ``open_backplane(config)`` and a recording
listener. A new backplane is done when this suite passes for it. Redis tests use a prefix of
their own on the shared test Redis and delete its keys afterwards (never FLUSHDB, never CONFIG
SET there); tests that must misconfigure Redis start a redis-server of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis

from hub.backplane import (
    Backplane,
    BackplaneFull,
    BackplaneUnavailable,
    Catalog,
    ChannelClosed,
    ChannelDeleted,
    Closing,
    Counts,
    Deletion,
    Health,
    History,
    Presence,
    Tickets,
)
from hub.events import Event, parse_position
from tests.support.backplane_rig import REDIS_URL, OwnRedis, Rig, draft, free_port, nats_settings
from tests.support.tcp_proxy import TcpProxy

BIG = 1 << 20


@pytest.fixture(
    params=[
        "memory",
        "engine",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("nats", marks=pytest.mark.nats),
    ],
    ids=["memory", "engine", "redis", "nats"],
)
async def rig(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Rig]:
    """Backplanes of one kind; for Redis a fresh prefix whose keys are deleted at the end."""
    kind = request.param
    if kind == "redis":
        # A short COUNT, so that history pages get cut and the lowest-cut rule matters.
        monkeypatch.setattr("hub.backplane.redis_history.HISTORY_COUNT", 3)
    if kind == "nats":
        monkeypatch.setattr("hub.backplane.nats_history.HISTORY_COUNT", 3)
        tag = uuid.uuid4().hex[:12]
        url = request.getfixturevalue("nats_url")
        made = Rig(kind, url, "", defaults=nats_settings(tag))
        yield made
        await made.close()
        return
    if kind == "engine":  # the workers' link to their supervisor's memory backplane
        monkeypatch.setattr("hub.backplane.engine_reports.REPORT_INTERVAL", 0.1)
    url = REDIS_URL if kind == "redis" else "memory"
    made = Rig(kind, url, f"ssehub-test:{uuid.uuid4().hex}:")
    yield made
    await made.close()


@pytest.fixture
async def redis_rig(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Rig]:
    """Redis backplanes only (for what the memory backplane has no counterpart of)."""
    monkeypatch.setattr("hub.backplane.redis_presence.COUNTS_INTERVAL", 0.1)
    made = Rig("redis", REDIS_URL, f"ssehub-test:{uuid.uuid4().hex}:")
    yield made
    await made.close()


@pytest.fixture(
    params=[
        "engine",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("nats", marks=pytest.mark.nats),
    ],
)
async def shared_rig(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Rig]:
    """Backplanes that several hub processes share (Redis, NATS, the workers' engine): one
    store, many instances."""
    monkeypatch.setattr("hub.backplane.redis_presence.COUNTS_INTERVAL", 0.1)
    monkeypatch.setattr("hub.backplane.nats_presence.COUNTS_INTERVAL", 0.1)
    monkeypatch.setattr("hub.backplane.engine_reports.REPORT_INTERVAL", 0.1)
    if request.param == "engine":
        made = Rig("engine", "memory", "")
    elif request.param == "nats":
        url = request.getfixturevalue("nats_url")
        made = Rig("nats", url, "", defaults=nats_settings(uuid.uuid4().hex[:12]))
    else:
        made = Rig("redis", REDIS_URL, f"ssehub-test:{uuid.uuid4().hex}:")
    yield made
    await made.close()


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    server = OwnRedis()
    yield server
    server.stop()


async def publish(backplane: Backplane, *channels: str) -> list[str]:
    """One event per channel, one publish each; their ids."""
    ids = []
    for channel in channels:
        ids += (await backplane.publish([draft(channel, f"on {channel}")], None)).ids
    return ids


def positions(ids: Sequence[str]) -> list[int]:
    found = [parse_position(i) for i in ids]
    assert None not in found
    return [p for p in found if p is not None]


async def read_all(
    backplane: Backplane,
    channels: Sequence[str],
    after: int | None,
    max_bytes: int,
    between: Any = None,
) -> tuple[list[History], list[Event]]:
    """Every page from ``after``; ``between()`` is awaited between two pages."""
    pages = [await backplane.history(channels, after, max_bytes)]
    while pages[-1].more:
        assert pages[-1].events, "a page with more=True must hold an event to continue after"
        assert len(pages) < 500, "paging does not end"
        if between is not None:
            await between()
        last = pages[-1].events[-1].position
        pages.append(await backplane.history(channels, last, max_bytes, continued=True))
    return pages, [e for page in pages for e in page.events]


# -- publish -----------------------------------------------------------------------------------


@pytest.mark.redis
async def test_positions_increase_across_channels_and_ids_name_them(rig: Rig) -> None:
    """One sequence for all channels; an id is ``<position>:<channel>``."""
    backplane, _ = await rig.make()
    ids = await publish(backplane, "a", "b", "a", "c", "b")
    ids += (await backplane.publish([draft("c"), draft("a"), draft("c")], None)).ids
    found = positions(ids)
    assert found == sorted(found) and len(set(found)) == len(found)
    channels = ["a", "b", "a", "c", "b", "c", "a", "c"]
    assert ids == [f"{p}:{c}" for p, c in zip(found, channels, strict=True)]


async def test_a_batch_is_stored_whole_in_order(rig: Rig) -> None:
    """A batch's events get consecutive places in the sequence and are all in the history."""
    backplane, _ = await rig.make()
    before = await publish(backplane, "a")
    batch = (await backplane.publish([draft("a", 1), draft("b", 2), draft("a", 3)], None)).ids
    after = await publish(backplane, "b")
    history = await backplane.history(["a", "b"], None, BIG)
    assert [e.id for e in history.events] == before + batch + after
    assert not history.more and history.reset is None


async def test_memory_batch_over_max_channels_stores_nothing() -> None:
    """BackplaneFull names the limit, and a refused batch leaves no event behind."""
    made = Rig("memory", "memory", "")
    backplane, recorder = await made.make(max_channels=2)
    try:
        await publish(backplane, "a")
        with pytest.raises(BackplaneFull, match=r"max_channels\) is 2"):
            await backplane.publish([draft("a"), draft("b"), draft("c")], None)
        history = await backplane.history(["a", "b", "c"], None, BIG)
        assert [e.channel for e in history.events] == ["a"]
        assert len(recorder.events) == 1
        await publish(backplane, "b")  # within the limit: fine
        with pytest.raises(BackplaneFull):
            await publish(backplane, "c")
    finally:
        await made.close()


async def test_idempotency_key_replays_and_stores_once(rig: Rig) -> None:
    """The same key returns the first ids, replayed, and stores nothing; another key stores."""
    backplane, _ = await rig.make()
    first = await backplane.publish([draft("a", 1), draft("b", 2)], "key-1")
    again = await backplane.publish([draft("a", 1), draft("b", 2)], "key-1")
    other = await backplane.publish([draft("a", 1)], "key-2")
    plain = await backplane.publish([draft("a", 1)], None)
    assert not first.replayed and again.replayed and not other.replayed and not plain.replayed
    assert again.ids == first.ids
    assert set(other.ids).isdisjoint(first.ids)
    history = await backplane.history(["a", "b"], None, BIG)
    assert [e.id for e in history.events] == first.ids + other.ids + plain.ids


# -- live delivery -----------------------------------------------------------------------------


async def test_live_delivery_exactly_once_in_order_across_channels(rig: Rig) -> None:
    """Concurrent publishes on three followed channels reach the listener once each, in order."""
    backplane, recorder = await rig.make()
    followed = ["a", "b", "c"]
    await backplane.follow(followed)
    rng = random.Random(7)

    async def burst(n: int) -> list[str]:
        ids: list[str] = []
        for _ in range(n):
            drafts = [draft(rng.choice([*followed, "other"])) for _ in range(rng.randint(1, 4))]
            ids += (await backplane.publish(drafts, None)).ids
        return ids

    published = [i for ids in await asyncio.gather(*(burst(15) for _ in range(4))) for i in ids]
    wanted = [i for i in published if i.split(":", 1)[1] in followed]
    await recorder.wait_for(wanted)
    await asyncio.sleep(0.1)  # room for a duplicate to show up
    got = recorder.ids(followed)
    assert sorted(got, key=lambda i: positions([i])[0]) == got, "not in position order"
    assert sorted(got) == sorted(wanted), "missing or duplicated"


async def test_live_delivery_from_another_instance(shared_rig: Rig) -> None:
    """Published on A, delivered by B's reader once each, in order, across channels."""
    a, _ = await shared_rig.make()
    b, recorder = await shared_rig.make()
    await b.follow(["x", "y"])
    ids: list[str] = []
    for i in range(30):
        ids += (await a.publish([draft("x" if i % 3 else "y", i)], None)).ids
    ids += (await a.publish([draft("y"), draft("x"), draft("z")], None)).ids
    wanted = [i for i in ids if not i.endswith(":z")]
    await recorder.wait_for(wanted)
    await asyncio.sleep(0.1)
    assert recorder.ids(["x", "y"]) == wanted


async def test_follow_frontier(rig: Rig) -> None:
    """Events before follow() returns are at or below its frontier and not delivered after it;
    events after it are all delivered."""
    backplane, recorder = await rig.make()
    early = await publish(backplane, "a", "b")
    frontier = await backplane.follow(["a", "b"])
    assert all(p <= frontier for p in positions(early)) or frontier == 0
    recorder.events.clear()
    late = await publish(backplane, "b", "a")
    await recorder.wait_for(late)
    assert recorder.ids(["a", "b"]) == late
    assert await backplane.follow(["a"]) == 0 or rig.kind == "memory"  # followed: cheap, no bound


async def test_unfollow_stops_delivery(shared_rig: Rig) -> None:
    """After unfollow a channel's events no longer reach the listener; the others' still do,
    and so do those of a channel joined while the other is gone (NATS makes its consumer anew).

    (The memory backplane delivers every event and leaves the dropping to the hub.)"""
    a, _ = await shared_rig.make()
    b, recorder = await shared_rig.make()
    await b.follow(["x", "y"])
    first = await publish(a, "x", "y")
    await recorder.wait_for(first)
    b.unfollow("x")
    await b.follow(["w"])
    later = await publish(a, "x", "y", "w")
    await recorder.wait_for(later[1:])
    await asyncio.sleep(0.2)
    assert recorder.ids() == [*first, *later[1:]]


async def test_idempotency_shared_by_instances(shared_rig: Rig) -> None:
    """The same key on another instance replays the first ids, for a batch and a single event."""
    a, _ = await shared_rig.make()
    b, _ = await shared_rig.make()
    first = await a.publish([draft("p", 1), draft("q", 2)], "k-batch")
    again = await b.publish([draft("p", 1), draft("q", 2)], "k-batch")
    assert again.replayed and again.ids == first.ids
    single = await b.publish([draft("p", 3)], "k-one")
    assert (await a.publish([draft("p", 3)], "k-one")).ids == single.ids
    history = await a.history(["p", "q"], None, BIG)
    assert [e.id for e in history.events] == first.ids + single.ids


# -- history -----------------------------------------------------------------------------------


async def test_history_is_one_position_ordered_snapshot(rig: Rig) -> None:
    """All channels asked for, merged by position; ``after`` excludes up to and including it."""
    backplane, _ = await rig.make()
    ids = await publish(backplane, "a", "b", "c", "a", "b", "a", "c")
    history = await backplane.history(["a", "b"], None, BIG)
    mine = [i for i in ids if not i.endswith(":c")]
    assert [e.id for e in history.events] == mine
    assert (history.reset, history.more) == (None, False)
    later = await backplane.history(["b", "a"], positions(mine)[1], BIG)
    assert [e.id for e in later.events] == mine[2:] and later.reset is None
    assert (await backplane.history(["a"], positions(ids)[-1], BIG)).events == []
    assert (await backplane.history(["nothing"], None, BIG)).events == []


async def test_history_pages_reassemble_exactly_while_publishes_race(rig: Rig) -> None:
    """Small pages, publishes between them: the pages join to the whole history, no gap, no
    duplicate, each page within max_bytes (at least one event)."""
    backplane, _ = await rig.make()
    channels = ["a", "b", "c"]
    rng = random.Random(3)
    ids: list[str] = []
    for n in range(40):
        # runs of one channel, so the per-channel reads get cut at different places
        ids += await publish(backplane, channels[(n // 5 + rng.randint(0, 1)) % 3])
    frame = len((await backplane.history(["a"], None, BIG)).events[0].frame)
    racing = 0

    async def race() -> None:
        nonlocal racing
        if racing < 15:
            racing += 1
            ids.extend(await publish(backplane, rng.choice([*channels, "d"])))

    pages, events = await read_all(backplane, channels, None, 3 * frame + 5, race)
    assert [e.id for e in events] == [i for i in ids if not i.endswith(":d")]
    assert len(pages) > 5
    for page in pages:
        assert page.events
        assert len(page.events) == 1 or sum(len(e.frame) for e in page.events) <= 3 * frame + 5
    # pages longer than the per-channel reads (Redis: COUNT 3): only the lowest cut is exact
    assert [e.id for e in (await read_all(backplane, channels, None, 12 * frame))[1]] == [
        e.id for e in events
    ]
    resumed = await read_all(backplane, channels, events[9].position, 1)
    assert [e.id for e in resumed[1]] == [e.id for e in events[10:]]
    assert all(len(page.events) == 1 for page in resumed[0])


async def test_reset_unknown_id(rig: Rig) -> None:
    """An id above the sequence, or from before this backplane (foreign): unknown-id, then all
    retained from the oldest."""
    backplane, _ = await rig.make()
    ids = await publish(backplane, "a", "b", "a")
    for after in (positions(ids)[-1] + 10**9, 1):
        history = await backplane.history(["a", "b"], after, BIG)
        assert history.reset is not None and history.reset.reason == "unknown-id"
        assert history.reset.oldest_id == ids[0]
        assert [e.id for e in history.events] == ids


async def test_reset_expired_by_size_and_its_pages_continue(rig: Rig) -> None:
    """A resume from before what a channel trimmed is "expired", the reset page starts from the
    oldest retained event of all the channels, and its continuation pages carry on from there
    although they start below the trimmed channel's cut."""
    backplane, _ = await rig.make(history_size=3)
    quiet = await publish(backplane, "q")
    busy = await publish(backplane, *["b"] * 6)
    history = await backplane.history(["b"], positions(busy)[1], BIG)
    assert history.reset is not None and history.reset.reason == "expired"
    assert history.reset.oldest_id == busy[3]
    assert [e.id for e in history.events] == busy[3:]
    exact = await backplane.history(["b"], positions(busy)[2], BIG)
    assert exact.reset is None and [e.id for e in exact.events] == busy[3:]
    pages, events = await read_all(backplane, ["q", "b"], positions(quiet)[0] - 1, 1)
    assert pages[0].reset is not None and pages[0].reset.oldest_id == quiet[0]
    assert [p.reset for p in pages[1:]] == [None] * (len(pages) - 1)
    assert [e.id for e in events] == quiet + busy[3:]


@pytest.mark.timeout(30)
async def test_reset_expired_by_age(rig: Rig) -> None:
    """Past history_ttl events are gone: a resume from before them is "expired"."""
    # history_ttl 2, not 1: the fresh event must still be young when read, and the age limit
    # is Redis's own clock (TIME in the scripts), so it cannot be injected; the second of margin
    # is what a loaded machine needs between a publish and the read after it.
    backplane, _ = await rig.make(history_ttl=2)
    ids = await publish(backplane, "a", "a")
    await asyncio.sleep(2.3)
    gone = await backplane.history(["a"], positions(ids)[0], BIG)
    assert gone.reset is not None and gone.reset.reason == "expired"
    assert (gone.events, gone.reset.oldest_id) == ([], None)
    fresh = await publish(backplane, "a")
    history = await backplane.history(["a"], positions(ids)[0], BIG)
    assert history.reset is not None and history.reset.reason == "expired"
    assert history.reset.oldest_id == fresh[0]
    assert [e.id for e in history.events] == fresh
    assert (await backplane.history(["a"], None, BIG)).events == history.events


@pytest.mark.timeout(30)
async def test_history_skips_events_past_the_age_limit_not_yet_trimmed(rig: Rig) -> None:
    """An event past history_ttl is not served even while newer ones keep its channel alive
    and no publish has trimmed it yet; a resume from before it is "expired"."""
    backplane, _ = await rig.make(history_ttl=2)  # old ages 2.4 s, young 1.2 s (0.8 s margin)
    old = await publish(backplane, "a", "a")
    await asyncio.sleep(1.2)
    young = await publish(backplane, "a")
    await asyncio.sleep(1.2)
    assert [e.id for e in (await backplane.history(["a"], None, BIG)).events] == young
    history = await backplane.history(["a"], positions(old)[0], BIG)
    assert history.reset is not None and history.reset.reason == "expired"
    assert [e.id for e in history.events] == young


async def test_optional_interfaces_and_catalog(rig: Rig) -> None:
    """Memory: Health and Catalog; Redis and NATS: also Presence. channels() maps to the newest
    id."""
    backplane, _ = await rig.make()
    assert isinstance(backplane, Health) and isinstance(backplane, Catalog)
    assert isinstance(backplane, Presence) == (rig.kind != "memory")
    ids = await publish(backplane, "a", "b", "a")
    assert await backplane.channels() == {"a": ids[2], "b": ids[1]}
    assert backplane.state().connected


# -- failures ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind", [pytest.param("redis", marks=pytest.mark.redis), pytest.param("nats")]
)
async def test_store_unreachable(kind: str) -> None:
    """A closed port: start() still returns; every call raises BackplaneUnavailable."""
    if kind == "redis":
        down = Rig("redis-down", f"redis://127.0.0.1:{free_port()}/0", f"ssehub-test:{kind}:")
    else:
        down = Rig("nats-down", f"nats://127.0.0.1:{free_port()}", "", defaults=nats_settings("x"))
    try:
        backplane, _ = await down.make()
        assert isinstance(backplane, Health) and isinstance(backplane, Catalog)
        assert not backplane.state().connected
        with pytest.raises(BackplaneUnavailable, match="did not answer"):
            await backplane.publish([draft("a")], None)
        with pytest.raises(BackplaneUnavailable):
            await backplane.history(["a"], None, BIG)
        with pytest.raises(BackplaneUnavailable):
            await backplane.follow(["a"])
        with pytest.raises(BackplaneUnavailable):
            await backplane.channels()
        assert not backplane.state().connected
    finally:
        await down.close()


async def _until(condition: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 (state() has no event to wait on)
            await asyncio.sleep(0.02)


@pytest.mark.redis
async def test_error_replies_oom(own_redis: OwnRedis, monkeypatch: pytest.MonkeyPatch) -> None:
    """Redis answering OOM: publish raises BackplaneUnavailable (not ResponseError), state says
    disconnected, the reader lives on; once memory is allowed again a publish is delivered."""
    monkeypatch.setattr("hub.backplane.redis_presence.COUNTS_INTERVAL", 0.1)
    made = Rig("redis", own_redis.url, "ssehub-test:oom:")
    try:
        backplane, recorder = await made.make()
        assert isinstance(backplane, Health)
        await backplane.follow(["a"])
        first = await publish(backplane, "a")
        await recorder.wait_for(first)
        await own_redis.command("CONFIG", "SET", "maxmemory-policy", "noeviction")
        await own_redis.command("CONFIG", "SET", "maxmemory", "1")
        with pytest.raises(BackplaneUnavailable, match=r"answered with an error.*maxmemory"):
            await backplane.publish([draft("a"), draft("b")], None)
        assert not backplane.state().connected
        await asyncio.sleep(0.3)  # several counts rounds fail meanwhile
        assert not backplane.state().connected
        assert [e.id for e in (await backplane.history(["a", "b"], None, BIG)).events] == first
        assert not backplane.state().connected, "a read does not prove that writes work"
        await own_redis.command("CONFIG", "SET", "maxmemory", "0")
        second = await publish(backplane, "a")
        await recorder.wait_for(second)
        assert recorder.ids() == first + second
        await _until(lambda: backplane.state().connected)
    finally:
        await made.close()


@pytest.mark.redis
async def test_error_replies_to_the_reader(own_redis: OwnRedis) -> None:
    """An error reply to the reader's read (WRONGTYPE here: a foreign key in place of a
    followed channel's stream) does not kill it: it reports the link lost, retries, and
    delivers what was stored meanwhile once Redis answers normally."""
    url = urlsplit(own_redis.url)
    assert url.hostname is not None and url.port is not None
    proxy = TcpProxy(url.hostname, url.port)  # b's link, held while the key is replaced
    await proxy.start()
    made = Rig("redis", own_redis.url, "ssehub-test:wrongtype:")
    try:
        a, _ = await made.make()
        b, recorder = await made.make(
            backplane=url._replace(netloc=f"{url.hostname}:{proxy.port}").geturl()
        )
        assert isinstance(b, Health)
        await b.follow(["a", "w"])
        first = await publish(a, "a", "w")
        await recorder.wait_for(first)
        proxy.hold()
        meanwhile = await publish(a, "a", "w")
        await own_redis.command("DEL", f"{made.prefix}s:w")
        await own_redis.command("SET", f"{made.prefix}s:w", "not a stream")
        proxy.release()  # b's reader learns of both events, and its read of w fails
        await _until(lambda: not b.state().connected)
        await asyncio.sleep(0.3)
        assert recorder.ids() == first
        await own_redis.command("DEL", f"{made.prefix}s:w")  # w's event went with its stream
        await recorder.wait_for(meanwhile[:1])
        later = await publish(a, "a", "w")
        await recorder.wait_for(later)
        assert recorder.ids() == first + meanwhile[:1] + later
        await _until(lambda: b.state().connected)
    finally:
        await made.close()
        await proxy.close()


@pytest.mark.redis
async def test_a_reader_behind_the_notify_stream_reads_the_streams(
    redis_rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader further behind than the notify stream keeps (trimmed meanwhile) misses nothing
    and keeps position order: it reads its channels' streams themselves, in rounds cut at
    READ_COUNT, then follows the notify stream again."""
    monkeypatch.setattr("hub.backplane.redis_scripts.NOTIFY_LENGTH", 150)
    monkeypatch.setattr("hub.backplane.redis_reader.READ_COUNT", 100)
    url = urlsplit(redis_rig.url)
    assert url.hostname is not None and url.port is not None
    proxy = TcpProxy(url.hostname, url.port)
    await proxy.start()
    try:
        a, _ = await redis_rig.make()
        b, recorder = await redis_rig.make(
            backplane=url._replace(netloc=f"{url.hostname}:{proxy.port}").geturl()
        )
        await b.follow(["x", "y"])
        ids = await publish(a, "x", "y")
        await recorder.wait_for(ids)
        proxy.hold()
        # x's notify entries are trimmed before b reads them; y's later ones remain
        for n in range(350):  # far more notify entries than the stream keeps
            ids += await publish(a, "x" if n < 50 else "yz"[n % 2])
        ids += (await a.publish([draft("y", n) for n in range(250)], None)).ids  # a cut
        client = aioredis.Redis.from_url(redis_rig.url)
        kept = await client.xlen(f"{redis_rig.prefix}notify")
        await client.aclose()
        assert kept < 300, "the notify stream was not trimmed: nothing is tested"
        proxy.release()
        ids += await publish(a, "x", "z", "y")  # and live again after catching up
        wanted = [i for i in ids if not i.endswith(":z")]
        await recorder.wait_for(wanted)
        await asyncio.sleep(0.1)
        assert recorder.ids(["x", "y"]) == wanted
    finally:
        await proxy.close()


@pytest.mark.redis
async def test_a_batch_over_many_channels_reaches_readers_of_a_few(redis_rig: Rig) -> None:
    """A batch on more channels, or longer names, than one notify entry lists (it says "any")
    reaches a process that follows a few of them, in position order with what comes after."""
    a, _ = await redis_rig.make()
    b, recorder = await redis_rig.make()
    long = [f"{n}-" + "x" * 190 for n in range(6)]  # 6 names, over 1 KB together
    await b.follow(["c7", "c39", long[4]])
    for batch in ([draft(f"c{n}", n) for n in range(40)], [draft(name) for name in long]):
        ids = (await a.publish(batch, None)).ids
        await recorder.wait_for([i for i in ids if i.endswith((":c7", ":c39", long[4]))])
    later = await publish(a, "c39", long[4], "c7")
    await recorder.wait_for(later)
    await asyncio.sleep(0.1)
    got = recorder.ids(["c7", "c39", long[4]])
    assert len(got) == 6 and got[3:] == later
    assert sorted(got, key=lambda i: positions([i])[0]) == got


async def test_presence_counts_across_instances(shared_rig: Rig) -> None:
    """Each instance sees the others' counts summed, never its own; a closed one drops out."""
    a, _ = await shared_rig.make()
    b, _ = await shared_rig.make()
    c, _ = await shared_rig.make()
    assert isinstance(a, Presence) and isinstance(b, Presence) and isinstance(c, Presence)
    a.share_counts(lambda: Counts({"x": 2, "idle": 0}, 3))
    b.share_counts(lambda: Counts({"x": 1, "y": 4}, 5))
    expected = {
        a: Counts({"x": 1, "y": 4}, 5),
        b: Counts({"x": 2}, 3),
        c: Counts({"x": 3, "y": 4}, 8),
    }
    await _until(lambda: all(bp.remote_counts() == want for bp, want in expected.items()))
    await b.close()
    shared_rig.built.remove(b)
    await _until(lambda: a.remote_counts() == Counts())


# -- optional: tickets and deletion (private channels) ----------------------------------------


async def test_ticket_is_spent_once_on_any_instance(rig: Rig) -> None:
    """Issued on A, good once on B (or A, for memory); of concurrent spends exactly one wins."""
    a, _ = await rig.make()
    b = (await rig.make())[0] if rig.kind != "memory" else a
    assert isinstance(a, Tickets) and isinstance(b, Tickets)
    await a.issue_ticket("digest-1", ["user/1", "user/2"], 30)
    assert await b.spend_ticket("digest-1") == ["user/1", "user/2"]
    assert await a.spend_ticket("digest-1") is None
    assert await b.spend_ticket("never-issued") is None
    await a.issue_ticket("digest-2", ["x"], 30)
    spent = await asyncio.gather(*(s.spend_ticket("digest-2") for s in [a, b] * 5))
    assert [found for found in spent if found is not None] == [["x"]]


async def test_ticket_expires(rig: Rig) -> None:
    backplane, _ = await rig.make()
    assert isinstance(backplane, Tickets)
    await backplane.issue_ticket("soon-gone", ["x"], 0.2)
    await asyncio.sleep(0.4)
    assert await backplane.spend_ticket("soon-gone") is None


async def test_delete_channel(rig: Rig) -> None:
    """History gone; publishes refused whole while the tombstone stands; deleting again says
    so; a channel with no history is deleted only ``anyway``."""
    backplane, recorder = await rig.make()
    assert isinstance(backplane, Deletion)
    await backplane.follow(["a", "b"])
    kept = await publish(backplane, "a", "b")
    assert await backplane.delete_channel("a", anyway=False) is True
    await recorder.wait_for_deleted("a")
    history = await backplane.history(["a", "b"], None, BIG)
    assert [e.id for e in history.events] == kept[1:]
    resumed = await backplane.history(["a", "b"], positions(kept)[0], BIG)
    assert resumed.reset is None, "a deleted channel must not spoil a resume of the others"
    with pytest.raises(ChannelDeleted, match="'a'"):
        await backplane.publish([draft("b"), draft("a")], None)
    after = await backplane.history(["b"], None, BIG)
    assert [e.id for e in after.events] == kept[1:], "a refused batch stored something"
    assert await backplane.delete_channel("a", anyway=True) is None
    assert await backplane.delete_channel("never", anyway=False) is False
    assert await backplane.delete_channel("never", anyway=True) is True
    assert backplane.deleted(["a", "b", "never"]) == ["a", "never"]
    if isinstance(backplane, Catalog):
        assert "a" not in await backplane.channels()


async def test_deletion_right_after_a_burst_loses_none_of_it(shared_rig: Rig) -> None:
    """A service publishes its last events and deletes the channel at once: another instance's
    reader, still behind, must deliver every one of them before ``deleted`` (deletion ends
    what is served, never what was acknowledged before it)."""
    if shared_rig.kind == "engine":
        pytest.skip("the engine's link is a Unix socket, which the TCP proxy cannot stall")
    url = urlsplit(shared_rig.url)
    assert url.hostname is not None and url.port is not None
    proxy = TcpProxy(url.hostname, url.port)  # b's link to the backplane, which will stall
    await proxy.start()
    try:
        a, _ = await shared_rig.make(history_size=5000)
        b, recorder = await shared_rig.make(
            history_size=5000,
            backplane=url._replace(netloc=f"{url.hostname}:{proxy.port}").geturl(),
        )
        assert isinstance(a, Deletion)
        await b.follow(["x"])
        before = await publish(a, "x")
        await recorder.wait_for(before)
        proxy.hold()
        for _ in range(3):  # more than one NATS pull (1000) or Redis read; within history_size
            batch = [draft("x", f"{n}") for n in range(1000)]
            before += (await a.publish(batch, None)).ids
        assert await a.delete_channel("x", anyway=False) is True
        proxy.release()
        await recorder.wait_for_deleted("x")
        assert recorder.sequence == [*before, "deleted:x"]
    finally:
        await proxy.close()


async def test_deletion_reaches_every_instance_in_order(shared_rig: Rig) -> None:
    """B's listener gets ``deleted`` after every event stored before it, before later ones; a
    follow after the deletion sees it in ``deleted``."""
    a, _ = await shared_rig.make()
    b, recorder = await shared_rig.make()
    c, _ = await shared_rig.make()
    assert isinstance(a, Deletion) and isinstance(b, Deletion) and isinstance(c, Deletion)
    await b.follow(["x", "y"])
    before = await publish(a, "x", "y", "x")
    assert await a.delete_channel("x", anyway=False) is True
    later = await publish(a, "y")
    await recorder.wait_for(later)
    assert recorder.sequence == [*before, "deleted:x", *later]
    assert c.deleted(["x"]) == []  # c follows nothing yet: it learns at follow
    await c.follow(["x", "y"])
    assert c.deleted(["x", "y"]) == ["x"]
    history = await c.history(["x", "y"], None, BIG)  # nothing of x, on any instance
    assert [e.id for e in history.events] == [i for i in [*before, *later] if i.endswith(":y")]


async def test_deletion_refuses_publishes_on_every_instance(shared_rig: Rig) -> None:
    """A process that published on the channel before it was deleted elsewhere (so it knows an
    older last event) is refused too, whole; of two concurrent deletes one does it."""
    a, _ = await shared_rig.make()
    b, _ = await shared_rig.make()
    fresh, _ = await shared_rig.make()
    assert isinstance(a, Deletion) and isinstance(b, Deletion)
    await publish(b, "x", "z")
    assert await a.delete_channel("x", anyway=False) is True
    for backplane in (b, fresh):
        with pytest.raises(ChannelDeleted, match="'x'"):
            await backplane.publish([draft("y"), draft("x")], None)
    assert (await b.history(["x", "y"], None, BIG)).events == []
    done = await asyncio.gather(a.delete_channel("z", False), b.delete_channel("z", False))
    assert sorted(done, key=str) == [None, True]


async def test_a_publish_racing_a_deletion_is_stored_before_it_or_refused(
    shared_rig: Rig,
) -> None:
    """Publishes from another process while the channel is deleted: each is acknowledged (then
    deleted with the history) or refused; none is stored after the tombstone."""
    a, _ = await shared_rig.make()
    b, _ = await shared_rig.make()
    assert isinstance(a, Deletion)
    await publish(b, "r")

    async def keep_publishing() -> tuple[int, int]:
        stored = refused = 0
        for _ in range(50):
            try:
                await b.publish([draft("r")], None)
                stored += 1
            except ChannelDeleted:
                refused += 1
        return stored, refused

    publishing = asyncio.create_task(keep_publishing())
    await asyncio.sleep(0)
    assert await a.delete_channel("r", anyway=False) is True
    stored, refused = await publishing
    assert stored + refused == 50
    assert (await a.history(["r"], None, BIG)).events == []
    assert (await b.history(["r"], None, BIG)).events == []


async def test_a_tombstone_ends_after_history_ttl(rig: Rig) -> None:
    """Once the tombstone is over, the name is a new channel: publishes are stored again."""
    backplane, _ = await rig.make(history_ttl=2)  # the new event read back must still be young
    assert isinstance(backplane, Deletion)
    await publish(backplane, "x")
    assert await backplane.delete_channel("x", anyway=False) is True
    await asyncio.sleep(2.3)
    assert backplane.deleted(["x"]) == []
    ids = await publish(backplane, "x")
    assert [e.id for e in (await backplane.history(["x"], None, BIG)).events] == ids


def _closing(backplane: Backplane) -> Closing:
    assert isinstance(backplane, Closing), "every backplane closes channels"
    return backplane


async def test_close_channel(rig: Rig) -> None:
    """Closed: publishes refused whole (ChannelClosed), the history kept and served, closing
    again says so; a deleted channel cannot be closed, a closed one can be deleted."""
    backplane, recorder = await rig.make()
    closing = _closing(backplane)
    await backplane.follow(["a", "b"])
    kept = await publish(backplane, "a", "b", "a")
    assert await closing.close_channel("a") is True
    await recorder.wait_for_closed("a")
    assert recorder.sequence == [*kept, "closed:a"]
    history = await backplane.history(["a", "b"], None, BIG)
    assert [e.id for e in history.events] == kept, "closing must keep the history"
    resumed = await backplane.history(["a"], positions(kept)[0], BIG)
    assert resumed.reset is None and [e.id for e in resumed.events] == [kept[2]]
    with pytest.raises(ChannelClosed, match="'a'"):
        await backplane.publish([draft("b"), draft("a")], None)
    after = await backplane.history(["b"], None, BIG)
    assert [e.id for e in after.events] == [kept[1]], "a refused batch stored something"
    assert await closing.close_channel("a") is False
    assert closing.closed(["a", "b"]) == ["a"]
    assert await closing.close_channel("never-published") is True
    if isinstance(backplane, Catalog):
        assert (await backplane.channels())["a"] == kept[2]
    assert isinstance(backplane, Deletion)
    assert await backplane.delete_channel("a", anyway=False) is True
    assert await backplane.delete_channel("b", anyway=False) is True
    assert await closing.close_channel("b") is None


async def test_a_close_ends_after_history_ttl(rig: Rig) -> None:
    """Once the close's mark is over (history_ttl), the name takes events again."""
    backplane, _ = await rig.make(history_ttl=2)  # the new event read back must still be young
    closing = _closing(backplane)
    await publish(backplane, "x")
    assert await closing.close_channel("x") is True
    await asyncio.sleep(2.3)
    assert closing.closed(["x"]) == []
    ids = await publish(backplane, "x")
    assert [e.id for e in (await backplane.history(["x"], None, BIG)).events] == ids


async def test_close_reaches_every_instance_in_order(shared_rig: Rig) -> None:
    """B's listener gets ``closed`` after every event stored before it, before later events of
    other channels; a follow after the close sees it in ``closed``; every instance refuses."""
    a, _ = await shared_rig.make()
    b, recorder = await shared_rig.make()
    c, _ = await shared_rig.make()
    closing_a, closing_c = _closing(a), _closing(c)
    await b.follow(["x", "y"])
    before = await publish(a, "x", "y", "x")
    assert await closing_a.close_channel("x") is True
    later = await publish(a, "y")
    await recorder.wait_for(later)
    assert recorder.sequence == [*before, "closed:x", *later]
    assert closing_c.closed(["x"]) == []  # c follows nothing yet: it learns at follow
    for backplane in (b, c):
        with pytest.raises(ChannelClosed, match="'x'"):
            await backplane.publish([draft("y"), draft("x")], None)
    await c.follow(["x", "y"])
    assert closing_c.closed(["x", "y"]) == ["x"]
    history = await c.history(["x"], None, BIG)
    assert [e.id for e in history.events] == [i for i in before if i.endswith(":x")]
    done = await asyncio.gather(closing_a.close_channel("y"), _closing(b).close_channel("y"))
    assert sorted(done) == [False, True]


async def test_a_publish_racing_a_close_is_stored_before_it_or_refused(shared_rig: Rig) -> None:
    """Publishes from another process while the channel is closed: each is stored before the
    close (and delivered before ``closed``) or refused; none is stored after it."""
    a, _ = await shared_rig.make()
    b, _ = await shared_rig.make()
    watcher, recorder = await shared_rig.make()
    closing = _closing(a)
    await watcher.follow(["r"])

    async def keep_publishing() -> list[str]:
        stored = []
        for _ in range(50):
            with contextlib.suppress(ChannelClosed):
                stored += (await b.publish([draft("r")], None)).ids
        return stored

    publishing = asyncio.create_task(keep_publishing())
    await asyncio.sleep(0)
    assert await closing.close_channel("r") is True
    stored = await publishing
    await recorder.wait_for_closed("r")
    assert recorder.sequence == [*stored, "closed:r"]
    assert [e.id for e in (await a.history(["r"], None, BIG)).events] == stored
