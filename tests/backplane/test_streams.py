"""The ``Streams`` contract (hub/backplane/streams.py), checked against every backplane.

Like tests/backplane/test_backplane.py: no HTTP and no hub, backplanes built with
``open_backplane(config)`` and a recording listener. A backplane that does not implement
``Streams`` is skipped, saying so; it implements it when this file passes for it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from hub.backplane import Backplane, ChannelClosed, Closing, Deletion
from hub.backplane.streams import (
    Appended,
    Outcome,
    Producer,
    Shape,
    Streams,
    StreamState,
    media_type,
)
from hub.events import Draft, parse_position
from tests.support.backplane_rig import REDIS_URL, Recorder, Rig, draft, nats_settings

BIG = 1 << 20
JSON = Shape("application/json")


@pytest.fixture(
    params=[
        "memory",
        "engine",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("nats", marks=pytest.mark.nats),
    ],
    ids=["memory", "engine", "redis", "nats"],
)
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    """Backplanes of one kind (as test_backplane.py's): Redis on a prefix, NATS on a stream of
    the test's own, both removed at the end."""
    kind = request.param
    if kind == "nats":
        tag = uuid.uuid4().hex[:12]
        made = Rig(kind, request.getfixturevalue("nats_url"), "", defaults=nats_settings(tag))
    else:
        url = REDIS_URL if kind == "redis" else "memory"
        made = Rig(kind, url, f"ssehub-test:{uuid.uuid4().hex}:")
    yield made
    await made.close()


@pytest.fixture(
    params=[
        "engine",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("nats", marks=pytest.mark.nats),
    ],
)
async def shared_rig(request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    """Backplanes that several hub processes share (the workers' engine too): one store, many
    instances."""
    if request.param == "engine":
        made = Rig("engine", "memory", "")
    elif request.param == "nats":
        tag = uuid.uuid4().hex[:12]
        made = Rig("nats", request.getfixturevalue("nats_url"), "", defaults=nats_settings(tag))
    else:
        made = Rig("redis", REDIS_URL, f"ssehub-test:{uuid.uuid4().hex}:")
    yield made
    await made.close()


def streams(backplane: Backplane, kind: str) -> Streams:
    if not isinstance(backplane, Streams):
        pytest.skip(f"Streams not implemented on {kind} yet")
    return backplane


async def make(rig: Rig, **settings: object) -> tuple[Backplane, Streams, Recorder]:
    """A backplane, its Streams, and its listener (``sequence``: ids, "closed:<channel>")."""
    backplane, recorder = await rig.make(**settings)
    return backplane, streams(backplane, rig.kind), recorder


def position(ident: str) -> int:
    found = parse_position(ident)
    assert found is not None
    return found


def drafts(channel: str, *data: str) -> list[Draft]:
    return [draft(channel, item) for item in data]


async def stream_ids(backplane: Backplane, channel: str, state: StreamState) -> list[str]:
    """The ids a read of the whole stream gets: the channel's events above its start."""
    history = await backplane.history([channel], state.start, BIG)
    assert history.reset is None
    return [event.id for event in history.events]


async def append(
    store: Streams,
    channel: str,
    *data: str,
    content_type: str | None = None,
    producer: Producer | None = None,
    stream_seq: str | None = None,
    close: bool = False,
) -> Appended:
    return await store.append_stream(
        channel,
        drafts(channel, *data),
        content_type=content_type,
        producer=producer,
        stream_seq=stream_seq,
        close=close,
    )


def assert_refused(result: Appended, outcome: Outcome, before: StreamState) -> None:
    """Refused: that outcome, nothing stored (the tail did not move)."""
    assert result.outcome is outcome
    assert result.ids == []
    assert result.state is not None and result.state.tail == before.tail


# -- create, state, delete ---------------------------------------------------------------------


async def test_create_exists_and_answers_the_stored_state(rig: Rig) -> None:
    backplane, store, _ = await make(rig)
    shape = Shape("text/plain; charset=utf-8", ttl=3600)
    created, state = await store.create_stream("s", shape, [], False)
    assert created and state.shape == shape and not state.closed
    assert state.tail == state.start and state.created_at > 0
    assert await stream_ids(backplane, "s", state) == []
    again, same = await store.create_stream("s", Shape("application/json"), drafts("s", "x"), True)
    assert not again and same == state, "an existing stream is answered, never changed"
    assert await store.stream_state("s", touch=False) == state
    assert await store.stream_state("never", touch=True) is None


async def test_initial_drafts_and_a_closed_create(rig: Rig) -> None:
    """The drafts are the stream's first events; closed: the listener gets them, then closed."""
    backplane, store, recorder = await make(rig)
    await backplane.follow(["s"])
    created, state = await store.create_stream("s", JSON, drafts("s", "a", "b"), True)
    assert created and state.closed
    ids = await stream_ids(backplane, "s", state)
    assert len(ids) == 2 and state.tail == position(ids[-1]) and state.start < position(ids[0])
    await recorder.wait_for_closed("s")
    assert recorder.sequence == [*ids, "closed:s"]
    assert isinstance(backplane, Closing) and backplane.closed(["s"]) == ["s"]
    with pytest.raises(ChannelClosed):
        await backplane.publish([draft("s")], None)
    again, same = await store.create_stream("s", JSON, drafts("s", "a", "b"), True)
    assert not again and same == state


async def test_a_stream_over_native_history_starts_after_it(rig: Rig) -> None:
    backplane, store, _ = await make(rig)
    await backplane.publish([draft("s", "native")], None)
    created, state = await store.create_stream("s", JSON, drafts("s", "first"), False)
    assert created
    ids = await stream_ids(backplane, "s", state)
    assert len(ids) == 1 and state.tail == position(ids[0])


async def test_the_tail_follows_native_publishes(rig: Rig) -> None:
    backplane, store, _ = await make(rig)
    _, state = await store.create_stream("s", JSON, [], False)
    native = (await backplane.publish([draft("s", "from the hub's API")], None)).ids
    now = await store.stream_state("s", touch=False)
    assert now is not None and now.tail == position(native[0]) > state.tail
    assert now.start == state.start
    result = await append(store, "s", '"x"')
    assert result.outcome is Outcome.APPENDED and len(result.ids) == 1
    assert await stream_ids(backplane, "s", state) == [*native, *result.ids]
    assert result.state is not None and result.state.tail == position(result.ids[0])


async def test_delete_and_create_again(rig: Rig) -> None:
    """Deleted: listeners told, the state gone, the events never served again; a new stream may
    take the name at once, empty, while the deletion's tombstone stands."""
    backplane, store, recorder = await make(rig)
    await backplane.follow(["s"])
    _, old = await store.create_stream("s", JSON, drafts("s", "old"), False)
    assert await store.delete_stream("s") is True
    await recorder.wait_for_deleted("s")
    assert await store.stream_state("s", touch=False) is None
    assert (await backplane.history(["s"], None, BIG)).events == []
    assert await store.delete_stream("s") is False
    assert await store.delete_stream("never") is False
    created, new = await store.create_stream("s", Shape("text/plain"), [], False)
    assert created and new.shape == Shape("text/plain") and new.tail >= old.tail
    assert await stream_ids(backplane, "s", new) == []
    assert (await backplane.history(["s"], None, BIG)).events == []
    result = await append(store, "s", "new")
    assert result.outcome is Outcome.APPENDED
    assert await stream_ids(backplane, "s", new) == result.ids


async def test_deleting_the_channel_deletes_the_stream(rig: Rig) -> None:
    backplane, store, _ = await make(rig)
    assert isinstance(backplane, Deletion)
    await store.create_stream("s", JSON, [], False)  # no events: deleted all the same
    assert await backplane.delete_channel("s", anyway=False) is True
    assert await store.stream_state("s", touch=False) is None


# -- append outcomes ---------------------------------------------------------------------------


async def test_append_missing(rig: Rig) -> None:
    _, store, _ = await make(rig)
    result = await append(store, "none", "x")
    assert result.outcome is Outcome.MISSING and result.state is None and result.ids == []


async def test_content_type_is_compared_as_a_media_type(rig: Rig) -> None:
    _, store, _ = await make(rig)
    _, state = await store.create_stream("s", Shape("Text/Plain; charset=utf-8"), [], False)
    refused = await append(store, "s", "x", content_type="application/json")
    assert_refused(refused, Outcome.MISMATCH, state)
    assert media_type("TEXT/plain ; charset=latin-1") == "text/plain"
    ok = await append(store, "s", "x", content_type=media_type("text/PLAIN"))
    assert ok.outcome is Outcome.APPENDED


async def test_stream_seq_must_increase(rig: Rig) -> None:
    _, store, _ = await make(rig)
    await store.create_stream("s", JSON, [], False)
    assert (await append(store, "s", "1", stream_seq="b")).outcome is Outcome.APPENDED
    before = await store.stream_state("s", touch=False)
    assert before is not None
    for seq in ("b", "a", "10"):  # byte-wise: "10" < "b"
        assert_refused(
            await append(store, "s", "x", stream_seq=seq), Outcome.SEQ_REGRESSION, before
        )
    assert (await append(store, "s", "2", stream_seq="c")).outcome is Outcome.APPENDED
    assert (await append(store, "s", "3")).outcome is Outcome.APPENDED  # no Stream-Seq: no check


async def test_producer_epochs_and_seqs(rig: Rig) -> None:
    backplane, store, _ = await make(rig)
    _, created = await store.create_stream("s", JSON, [], False)
    state = created

    async def send(epoch: int, seq: int, **more: str) -> Appended:
        return await append(
            store, "s", f"{epoch}/{seq}", producer=Producer("p", epoch, seq), **more
        )

    gap = await send(0, 1)  # an unknown producer starts at 0
    assert_refused(gap, Outcome.GAP, state)
    assert gap.expected_seq == 0
    stored = [(await send(0, 0)).ids, (await send(0, 1)).ids]
    assert all(len(ids) == 1 for ids in stored)
    state = (await send(0, 1)).state or state
    for seq in (0, 1):
        duplicate = await send(0, seq)
        assert_refused(duplicate, Outcome.DUPLICATE, state)
        assert duplicate.last_seq == 1
    gap = await send(0, 3)
    assert_refused(gap, Outcome.GAP, state)
    assert gap.expected_seq == 2
    assert_refused(await send(1, 1), Outcome.BAD_SEQ, state)
    fenced = (await send(1, 0)).ids  # the new epoch
    state = await store.stream_state("s", touch=False) or state
    stale = await send(0, 2)
    assert_refused(stale, Outcome.STALE_EPOCH, state)
    assert stale.epoch == 1
    other = await append(store, "s", "q", producer=Producer("q", 5, 0))  # producers are apart
    assert other.outcome is Outcome.APPENDED
    # A refusal for another reason records nothing of the producer: its seq 1 is still next.
    assert (await send(1, 1, stream_seq="b")).outcome is Outcome.APPENDED
    assert_refused(await send(1, 2, stream_seq="a"), Outcome.SEQ_REGRESSION, await _state(store))
    assert (await send(1, 2, stream_seq="c")).outcome is Outcome.APPENDED
    ids = await stream_ids(backplane, "s", created)
    assert ids[:3] == [*stored[0], *stored[1], *fenced] and len(ids) == 6


async def test_close_with_a_last_append_and_its_duplicate(rig: Rig) -> None:
    """The close reaches the listener after the events before it; afterwards appends are CLOSED
    but a repeat of the producer tuple that closed it is DUPLICATE; a close-only needs no drafts."""
    backplane, store, recorder = await make(rig)
    await backplane.follow(["s", "t"])
    await store.create_stream("s", JSON, [], False)
    first = (await append(store, "s", "1")).ids
    closer = Producer("p", 0, 0)
    last = await append(store, "s", "2", "3", producer=closer, close=True)
    assert last.outcome is Outcome.APPENDED and last.state is not None and last.state.closed
    await recorder.wait_for_closed("s")
    assert recorder.sequence == [*first, *last.ids, "closed:s"]
    assert last.state.tail == position(last.ids[-1])
    assert_refused(await append(store, "s", "4"), Outcome.CLOSED, last.state)
    assert_refused(await append(store, "s", close=True), Outcome.CLOSED, last.state)
    assert_refused(
        await append(store, "s", "4", producer=Producer("p", 0, 1)), Outcome.CLOSED, last.state
    )
    again = await append(store, "s", "2", "3", producer=closer, close=True)
    assert_refused(again, Outcome.DUPLICATE, last.state)
    assert again.last_seq == 0
    with pytest.raises(ChannelClosed):
        await backplane.publish([draft("s")], None)
    _, open_one = await store.create_stream("t", JSON, [], False)
    only = await append(store, "t", close=True)
    assert only.outcome is Outcome.APPENDED and only.ids == []
    assert only.state is not None and only.state.closed and only.state.tail == open_one.tail
    await recorder.wait_for_closed("t")
    assert isinstance(backplane, Closing) and backplane.closed(["s", "t"]) == ["s", "t"]


async def test_close_channel_closes_the_stream(rig: Rig) -> None:
    backplane, store, _ = await make(rig)
    assert isinstance(backplane, Closing)
    _, state = await store.create_stream("s", JSON, [], False)
    assert await backplane.close_channel("s") is True
    now = await store.stream_state("s", touch=False)
    assert now is not None and now.closed
    assert_refused(await append(store, "s", "x"), Outcome.CLOSED, state)
    assert backplane.closed(["s"]) == ["s"]


async def test_a_streams_close_outlasts_history_ttl(rig: Rig) -> None:
    """A stream stays closed as long as it lives, not only history_ttl like a channel's close."""
    backplane, store, _ = await make(rig, history_ttl=1)
    assert isinstance(backplane, Closing)
    await store.create_stream("s", JSON, [], True)
    await asyncio.sleep(1.5)
    now = await store.stream_state("s", touch=False)
    assert now is not None and now.closed and backplane.closed(["s"]) == ["s"]
    with pytest.raises(ChannelClosed):
        await backplane.publish([draft("s")], None)


# -- expiry ------------------------------------------------------------------------------------


async def test_a_sliding_ttl_expires_lazily_and_touch_restarts_it(rig: Rig) -> None:
    """ttl 3 s: touched after 1.5 s it lives past 3 s; a look without touch does not restart it;
    expired, the stream is deleted as by delete_stream (events gone, listeners told). (Sleeps
    only overshoot: each step has 1.4 s or more to spare on a busy machine.)"""
    backplane, store, recorder = await make(rig)
    await backplane.follow(["s"])
    await store.create_stream("s", Shape("application/json", ttl=3), drafts("s", "x"), False)
    await asyncio.sleep(1.5)
    assert await store.stream_state("s", touch=True) is not None
    await asyncio.sleep(1.6)  # 3.1 s after the create, 1.6 s after the touch
    assert await store.stream_state("s", touch=False) is not None
    await asyncio.sleep(1.6)  # 3.2 s after the touch: the look without touch did not count
    assert await store.stream_state("s", touch=False) is None
    await recorder.wait_for_deleted("s")
    assert (await backplane.history(["s"], None, BIG)).events == []
    assert (await append(store, "s", "y")).outcome is Outcome.MISSING
    created, _ = await store.create_stream("s", JSON, [], False)
    assert created


async def test_an_append_restarts_the_ttl_and_an_expired_stream_refuses_it(rig: Rig) -> None:
    _, store, _ = await make(rig)
    await store.create_stream("s", Shape("application/json", ttl=3), [], False)
    await asyncio.sleep(1.5)
    assert (await append(store, "s", "x")).outcome is Outcome.APPENDED
    await asyncio.sleep(1.6)  # 3.1 s after the create: alive, as the append restarted it
    assert (await append(store, "s", "x")).outcome is Outcome.APPENDED
    await asyncio.sleep(3.2)
    assert (await append(store, "s", "x")).outcome is Outcome.MISSING


async def test_an_absolute_expiry(rig: Rig) -> None:
    """Expired at its time, touched or not; the name may then be created again."""
    backplane, store, _ = await make(rig)
    shape = Shape("application/json", expires_at=time.time() + 1.5)
    created, state = await store.create_stream("s", shape, drafts("s", "x"), False)
    assert created and state.shape == shape
    assert await store.stream_state("s", touch=True) is not None
    await asyncio.sleep(2.0)
    assert await store.stream_state("s", touch=True) is None
    assert (await backplane.history(["s"], None, BIG)).events == []
    created, _ = await store.create_stream("s", JSON, [], False)
    assert created


# -- several processes (Redis, NATS) -----------------------------------------------------------


async def test_streams_are_shared_by_instances(shared_rig: Rig) -> None:
    """Created on A, appended on B, its close reaching C's listener after the events; of
    concurrent creates one creates; concurrent retries of one producer tuple store it once."""
    a, store_a, _ = await make(shared_rig)
    b, store_b, _ = await make(shared_rig)
    c, _, recorder = await make(shared_rig)
    await c.follow(["s"])
    done = await asyncio.gather(
        *(s.create_stream("s", JSON, [], False) for s in [store_a, store_b] * 3)
    )
    assert sorted(created for created, _ in done) == [False] * 5 + [True]
    results = await asyncio.gather(
        *(append(s, "s", "once", producer=Producer("p", 0, 0)) for s in [store_a, store_b] * 3)
    )
    outcomes = sorted(r.outcome.value for r in results)
    assert outcomes == ["appended"] + ["duplicate"] * 5
    stored = next(r.ids for r in results if r.outcome is Outcome.APPENDED)
    last = await append(store_b, "s", "last", close=True)
    await recorder.wait_for_closed("s")
    assert recorder.sequence == [*stored, *last.ids, "closed:s"]
    state = await store_a.stream_state("s", touch=False)
    assert state is not None and state.closed and state.tail == position(last.ids[-1])
    assert isinstance(c, Closing) and c.closed(["s"]) == ["s"]
    with pytest.raises(ChannelClosed):
        await a.publish([draft("s")], None)
    assert await store_b.delete_stream("s") is True
    await recorder.wait_for_deleted("s")
    assert await store_a.stream_state("s", touch=False) is None
    assert (await b.history(["s"], None, BIG)).events == []


async def _state(store: Streams) -> StreamState:
    state = await store.stream_state("s", touch=False)
    assert state is not None
    return state
