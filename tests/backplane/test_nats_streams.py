"""Durable Streams on NATS beyond the contract (tests/backplane/test_streams.py): what holds only
because of how hub/backplane/nats_streams.py keeps a stream (markers on the channel's subject,
a record beside it), checked where it could break: a marker expiring with ``history_ttl`` while
the stream lives on, and processes holding marks of a channel's earlier life.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from hub.backplane import ChannelClosed, Closing, Deletion
from hub.backplane.streams import Outcome
from tests.backplane.test_streams import JSON, append, make, stream_ids
from tests.support.backplane_rig import Rig, draft, nats_settings

pytestmark = pytest.mark.nats


@pytest.fixture
async def nats_rig(nats_url: str) -> AsyncIterator[Rig]:
    made = Rig("nats", nats_url, "", defaults=nats_settings(uuid.uuid4().hex[:12]))
    yield made
    await made.close()


async def test_a_native_delete_outlasts_its_tombstone(nats_rig: Rig) -> None:
    """The tombstone expires with history_ttl; the stream (which has no TTL) stays deleted."""
    backplane, store, _ = await make(nats_rig, history_ttl=1)
    assert isinstance(backplane, Deletion)
    await store.create_stream("s", JSON, [], False)
    assert await backplane.delete_channel("s", anyway=False) is True
    await asyncio.sleep(1.5)
    assert await store.stream_state("s", touch=False) is None
    assert (await append(store, "s", "x")).outcome is Outcome.MISSING
    created, _ = await store.create_stream("s", JSON, [], False)
    assert created


async def test_a_native_close_outlasts_its_marker(nats_rig: Rig) -> None:
    """Closed by the channel's native close: still closed once the marker has expired, for
    this process and for one that never saw the marker."""
    backplane, store, _ = await make(nats_rig, history_ttl=1)
    assert isinstance(backplane, Closing)
    await store.create_stream("s", JSON, [], False)
    assert await backplane.close_channel("s") is True
    await asyncio.sleep(1.5)
    state = await store.stream_state("s", touch=False)
    assert state is not None and state.closed
    assert (await append(store, "s", "x")).outcome is Outcome.CLOSED
    fresh, _, _ = await make(nats_rig, history_ttl=1)
    with pytest.raises(ChannelClosed):
        await fresh.publish([draft("s")], None)


async def test_a_process_holding_a_deletion_publishes_to_the_stream_created_again(
    nats_rig: Rig,
) -> None:
    """B deleted the channel (it holds the tombstone's mark); A creates a stream on it again:
    B's native publish goes into the new stream, B's listener is not told it is deleted, and
    the old life's events are served to no one."""
    a, store_a, _ = await make(nats_rig)
    b, _, recorder = await make(nats_rig)
    assert isinstance(b, Deletion)
    _, old = await store_a.create_stream("s", JSON, [draft("s", "old")], False)
    await b.follow(["s"])
    assert await b.delete_channel("s", anyway=False) is True
    assert b.deleted(["s"]) == ["s"]
    created, new = await store_a.create_stream("s", JSON, [], False)
    assert created and new.start > old.tail
    published = await b.publish([draft("s", "native")], None)
    assert await stream_ids(a, "s", new) == published.ids
    assert (await b.history(["s"], None, 1 << 20)).events[0].id == published.ids[0]
    assert len((await a.history(["s"], None, 1 << 20)).events) == 1
    await recorder.wait_for(published.ids)
    assert recorder.sequence == ["deleted:s", published.ids[0]]
    assert b.deleted(["s"]) == []


async def test_a_closed_stream_past_its_markers_is_closed_for_a_join(nats_rig: Rig) -> None:
    """The stream's close marker expired with history_ttl: another process refuses a native
    publish to it, and still does after following the channel (the join finds the record, and
    keeps the mark), and tells the join it is closed."""
    _, store, _ = await make(nats_rig, history_ttl=1)
    await store.create_stream("s", JSON, [], False)
    assert (await append(store, "s", "last", close=True)).outcome is Outcome.APPENDED
    await asyncio.sleep(1.5)
    other, _, _ = await make(nats_rig, history_ttl=1)
    assert isinstance(other, Closing)
    with pytest.raises(ChannelClosed):
        await other.publish([draft("s")], None)
    await other.follow(["s"])
    assert other.closed(["s"]) == ["s"]
    with pytest.raises(ChannelClosed):
        await other.publish([draft("s")], None)
    joiner, _, _ = await make(nats_rig, history_ttl=1)
    await joiner.follow(["s"])
    assert isinstance(joiner, Closing) and joiner.closed(["s"]) == ["s"]
