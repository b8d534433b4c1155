"""Durable Streams on Redis across hub processes: what the contract (tests/backplane/
test_streams.py) leaves to the backplanes that several processes share, with several backplane
instances on one prefix (each its own connections and reader, as separate processes have).

Races (an append against a close, one producer's retries from two processes) and marks that
must reach the other processes' readers: a close that outlasts ``history_ttl``, a name taken
again after a deletion.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from hub.backplane import Backplane, Closing, Deletion
from hub.backplane.streams import Appended, Outcome, Producer, Shape, Streams
from tests.support.backplane_rig import REDIS_URL, Rig, draft
from tests.support.shared_redis import redis_prefix

pytestmark = pytest.mark.redis

BIG = 1 << 20
JSON = Shape("application/json")


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    made = Rig("redis", REDIS_URL, redis_prefix())
    yield made
    await made.close()  # deletes every key of the prefix


def streams(backplane: Backplane) -> Streams:
    assert isinstance(backplane, Streams)
    return backplane


async def append(
    store: Streams, *data: str, producer: Producer | None = None, close: bool = False
) -> Appended:
    return await store.append_stream(
        "s",
        [draft("s", item) for item in data],
        content_type=None,
        producer=producer,
        stream_seq=None,
        close=close,
    )


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def stored_ids(backplane: Backplane) -> list[str]:
    return [event.id for event in (await backplane.history(["s"], None, BIG)).events]


@pytest.mark.parametrize("how", ["append", "close_channel"])
async def test_an_append_racing_a_close_is_stored_before_it_or_refused(rig: Rig, how: str) -> None:
    """Appends from process B while process A closes the stream (by a closing append, or the
    native close): each append is stored before the close, and delivered before ``closed`` on
    a third process, or refused as CLOSED; none is stored after it."""
    a, _ = await rig.make()
    b, _ = await rig.make()
    watcher, recorder = await rig.make()
    await watcher.follow(["s"])
    await streams(a).create_stream("s", JSON, [], False)

    async def keep_appending() -> tuple[list[str], list[Outcome]]:
        ids: list[str] = []
        outcomes = []
        for _ in range(60):
            result = await append(streams(b), '"x"')
            outcomes.append(result.outcome)
            ids += result.ids
        return ids, outcomes

    appending = asyncio.create_task(keep_appending())
    await asyncio.sleep(0.01)
    if how == "append":
        closed = await append(streams(a), close=True)
        assert closed.outcome is Outcome.APPENDED
    else:
        assert isinstance(a, Closing) and await a.close_channel("s") is True
    ids, outcomes = await appending
    first_refused = outcomes.index(Outcome.CLOSED)
    assert set(outcomes[:first_refused]) == {Outcome.APPENDED}
    assert set(outcomes[first_refused:]) == {Outcome.CLOSED}
    await recorder.wait_for_closed("s")
    assert recorder.sequence == [*ids, "closed:s"]
    assert await stored_ids(a) == ids
    state = await streams(b).stream_state("s", touch=False)
    assert state is not None and state.closed


async def test_one_producer_retried_from_two_processes_stores_each_tuple_once(rig: Rig) -> None:
    """Both processes send the same producer's seqs 0..19 in order (as a client retrying on
    another process would): each tuple is stored once, in seq order; the other gets DUPLICATE."""
    a, _ = await rig.make()
    b, _ = await rig.make()
    await streams(a).create_stream("s", JSON, [], False)

    async def send_all(store: Streams) -> list[Outcome]:
        outcomes = []
        for seq in range(20):
            result = await append(store, f'"{seq}"', producer=Producer("p", 3, seq))
            outcomes.append(result.outcome)
        return outcomes

    first, second = await asyncio.gather(send_all(streams(a)), send_all(streams(b)))
    for one, other in zip(first, second, strict=True):
        assert {one, other} == {Outcome.APPENDED, Outcome.DUPLICATE}
    events = (await b.history(["s"], None, BIG)).events
    assert [e.frame.split(b"data: ")[1].strip() for e in events] == [
        f'"{seq}"'.encode() for seq in range(20)
    ]


async def test_a_streams_close_outlasts_history_ttl_on_every_process(rig: Rig) -> None:
    """Closed on A with history_ttl 1 s: 1.5 s later a process that followed the stream and
    one that joins it only then both still see it closed, and a native publish is refused."""
    a, _ = await rig.make(history_ttl=1)
    b, recorder = await rig.make(history_ttl=1)
    await b.follow(["s"])
    await streams(a).create_stream("s", JSON, [draft("s", "last")], True)
    await recorder.wait_for_closed("s")
    await asyncio.sleep(1.5)
    late, _ = await rig.make(history_ttl=1)
    await late.follow(["s"])
    for backplane in (a, b, late):
        assert isinstance(backplane, Closing) and backplane.closed(["s"]) == ["s"]
    state = await streams(late).stream_state("s", touch=False)
    assert state is not None and state.closed


async def test_a_name_taken_again_reaches_every_process(rig: Rig) -> None:
    """Deleted on A, created again on A: B (still following) and C (following again after it
    left) no longer count the channel deleted, and see the new stream's events live."""
    a, _ = await rig.make()
    b, watching = await rig.make()
    c, later = await rig.make()
    await b.follow(["s"])
    await c.follow(["s"])
    await streams(a).create_stream("s", JSON, [draft("s", "old")], False)
    assert await streams(a).delete_stream("s") is True
    await watching.wait_for_deleted("s")
    await later.wait_for_deleted("s")
    c.unfollow("s")
    assert isinstance(b, Deletion) and isinstance(c, Deletion)
    assert b.deleted(["s"]) == ["s"] and c.deleted(["s"]) == ["s"]
    created, state = await streams(a).create_stream("s", JSON, [], False)
    assert created
    await until(lambda: b.deleted(["s"]) == [])  # the revival's marker, met by B's reader
    await c.follow(["s"])  # C's join finds no tombstone
    assert c.deleted(["s"]) == []
    new = (await append(streams(c), '"new"')).ids
    await watching.wait_for(new)
    await later.wait_for(new)
    assert await stored_ids(b) == new
    assert (await b.history(["s"], state.start, BIG)).events[0].id == new[0]


async def test_lazy_expiry_deletes_once_though_processes_race(rig: Rig) -> None:
    """An expired stream looked at by three processes at once is deleted once: one deletion
    reaches the listener, every look answers none."""
    a, _ = await rig.make()
    b, _ = await rig.make()
    watcher, recorder = await rig.make()
    await watcher.follow(["s"])
    shape = Shape("application/json", expires_at=time.time() + 0.5)
    await streams(a).create_stream("s", shape, [draft("s", "x")], False)
    await asyncio.sleep(0.8)
    looks: list[Awaitable[object]] = [
        streams(one).stream_state("s", touch=True) for one in (a, b, watcher) * 3
    ]
    assert await asyncio.gather(*looks) == [None] * 9
    await recorder.wait_for_deleted("s")
    await asyncio.sleep(0.2)
    assert recorder.deleted_channels == ["s"]


async def test_a_call_retried_by_the_library_acts_once(rig: Rig) -> None:
    """redis-py retries a script after a timeout; the operation key makes the retry answer the
    first call's reply instead of acting again (here: each call sent twice with one key, as a
    retry is)."""
    a, _ = await rig.make()
    store = streams(a)

    def operation(name: str) -> None:
        a._streams._operation = lambda: f"{rig.prefix}op:{name}"  # type: ignore[attr-defined]

    operation("create")
    first = await store.create_stream("s", JSON, [draft("s", "one")], False)
    assert first[0] and await store.create_stream("s", JSON, [draft("s", "one")], False) == first
    operation("append")
    appended = await append(store, '"two"')
    assert appended.outcome is Outcome.APPENDED and await append(store, '"two"') == appended
    assert len(await stored_ids(a)) == 2
    operation("delete")
    assert await store.delete_stream("s") is True
    assert await store.delete_stream("s") is True  # the first call's answer
    operation("another")
    assert await store.delete_stream("s") is False
