"""``replay=<channel>``: replay the history of some of a stream's channels, the others live.

The page's case: it watches ``orders`` live and starts a job, so the new stream must replay the
job's channel from the start, but not the history of ``orders`` again. Every test checks the
whole stream (no other channel's history, no gap and no duplicate where history meets live).
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from tests.conftest import HubServer, MakeHub
from tests.support.helpers import assert_next_is_marker, position, publish_many, read_all_until
from tests.support.race import race

STREAM = "/events?channel=a&channel=b"


async def test_replays_only_the_named_channel(hub: HubServer, backplane: str) -> None:
    """History of b only; a starts live; then both live, in order, and nothing more."""
    ids = await publish_many(hub, [("a", "a1"), ("b", "b1"), ("a", "a2"), ("b", "b2")])
    stream = await hub.subscribe(f"{STREAM}&replay=b")
    assert [(m.data, m.id) for m in await stream.take(2)] == [("b1", ids[1]), ("b2", ids[3])]
    live = await publish_many(hub, [("a", "a3"), ("b", "b3")])
    assert [(m.data, m.id) for m in await stream.take(2)] == [("a3", live[0]), ("b3", live[1])]
    await assert_next_is_marker(hub, "a", stream)


async def test_replay_of_every_channel_is_from_start(hub: HubServer, backplane: str) -> None:
    """Naming every channel (repeated ``replay``) is the same as ``from=start``."""
    ids = await publish_many(hub, [("a", "a1"), ("b", "b1")])
    stream = await hub.subscribe(f"{STREAM}&replay=a&replay=b")
    assert [m.id for m in await stream.take(2)] == ids
    await assert_next_is_marker(hub, "b", stream)


async def test_last_event_id_beats_replay(hub: HubServer, backplane: str) -> None:
    """A reconnecting browser resumes every channel after its id; replay no longer applies."""
    ids = await publish_many(hub, [("a", "a1"), ("b", "b1"), ("a", "a2"), ("b", "b2")])
    stream = await hub.subscribe(f"{STREAM}&replay=b", {"Last-Event-ID": ids[1]})
    assert [m.id for m in await stream.take(2)] == ids[2:]
    await assert_next_is_marker(hub, "a", stream)


async def test_replay_of_a_clock_is_ignored(hub: HubServer, backplane: str) -> None:
    """A clock has no history: replaying it replays nothing, and the feed starts live."""
    await publish_many(hub, [("a", "old")])
    stream = await hub.subscribe("/events?channel=a&channel=time/UTC/60&replay=time/UTC/60")
    tick = await stream.next()
    assert tick.event == "UPDATE"
    await assert_next_is_marker(hub, "a", stream)


async def test_long_replay_in_pages(make_hub: MakeHub, backplane: str) -> None:
    """A replayed history of several pages (over 256 KiB) stops at the frontier exactly."""
    hub = await make_hub(history_size=2000)
    padding = "x" * 1000
    items = [("b" if i % 4 else "a", f"{i}:{padding}") for i in range(400)]
    ids = await publish_many(hub, items)
    stream = await hub.subscribe(f"{STREAM}&replay=b")
    expected = [i for i, (channel, _) in zip(ids, items, strict=True) if channel == "b"]
    got = await read_all_until(stream, expected[-1])
    assert [m.id for m in got] == expected
    await assert_next_is_marker(hub, "a", stream)


@pytest.mark.any_backplane
async def test_replay_names_a_channel_of_the_stream(hub: HubServer) -> None:
    async with hub.session.get(f"{hub.url}{STREAM}&replay=c") as response:
        assert response.status == 400
        assert (await response.json())["error"] == "replay='c' is not one of the stream's channels"


@pytest.mark.any_backplane
async def test_replay_and_from_start_together_are_refused(hub: HubServer) -> None:
    async with hub.session.get(f"{hub.url}{STREAM}&replay=a&from=start") as response:
        assert response.status == 400
        assert "from=start (every channel) or replay=<channel>" in (await response.json())["error"]


async def test_replay_while_publishes_race(hub: HubServer, backplane: str) -> None:
    """Subscribers replaying b while publishes pour into a and b get each event once, in order.

    Each must get all of b (history then live) and, on a, every event from its first one on:
    an event of a published while b's history was read must not be skipped because b's
    history went further than the point where a started.
    """

    async def connect(index: int, receipts: list[dict[str, Any]], rng: random.Random) -> Any:
        return await hub.subscribe(f"{STREAM}&replay=b"), None

    result = await race(hub, connect, seed=3)
    assert result.raced >= 12, "the subscribers did not connect during the publishing burst"
    everything = result.everything
    for joined in result.joined:
        received = joined.ids
        assert len(received) == len(set(received)), "duplicates"
        first_a = min(position(i) for i in received if i.endswith(":a"))
        expected = [
            r["id"] for r in everything if r["channel"] == "b" or position(r["id"]) >= first_a
        ]
        assert received == expected, "gap or disorder"
        # a started no later than the subscription: whatever was published after it is there
        late = {r["id"] for r in result.receipts[joined.connected_at :]}
        assert late <= set(received)
