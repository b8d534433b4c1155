"""Replay by time: ``?since=<RFC 3339 time or Unix seconds>``.

Every retained event stored at or after the time, then live, exactly once and in order;
``Last-Event-ID`` wins over it; a time the history does not reach back to gets
``event: reset`` ``{"reason": "expired"}``; a future or unparsable one is a 400 JSON error.
"""

from __future__ import annotations

import asyncio
import math
import time
import urllib.parse
from datetime import UTC, datetime

import pytest

from tests.conftest import HubServer, MakeHub
from tests.support.helpers import assert_next_is_marker, publish_batch, publish_many


async def _instant() -> float:
    """A time strictly between what was stored before and what is stored after (the stores
    keep milliseconds at least; the margins are for that)."""
    await asyncio.sleep(0.01)
    now = time.time()
    await asyncio.sleep(0.01)
    return now


def _rfc3339(when: float) -> str:
    return urllib.parse.quote(datetime.fromtimestamp(when, UTC).isoformat(), safe="")


@pytest.mark.parametrize("form", ["unix", "rfc3339", "rfc3339-offset"])
async def test_since_replays_then_goes_live(hub: HubServer, backplane: str, form: str) -> None:
    await publish_many(hub, [("s", "old1"), ("s", "old2")])
    since = await _instant()
    ids = await publish_many(hub, [("s", "new1"), ("s", "new2")])
    text = {
        "unix": f"{since:.6f}",
        "rfc3339": _rfc3339(since).replace("%2B00%3A00", "Z"),
        "rfc3339-offset": urllib.parse.quote(
            datetime.fromtimestamp(since).astimezone().isoformat(), safe=""
        ),
    }[form]
    stream = await hub.subscribe(f"/channels/s/events?since={text}")
    got = await stream.take(2)
    assert [(m.data, m.id) for m in got] == [("new1", ids[0]), ("new2", ids[1])]
    live = await hub.publish("s", "live")
    assert (await stream.next()).id == live["id"]
    await assert_next_is_marker(hub, "s", stream)


async def test_whole_unix_seconds(hub: HubServer, backplane: str) -> None:
    """Whole seconds: every event stored in that second or later."""
    await publish_many(hub, [("u", "before")])  # the backplane began before that second
    await asyncio.sleep(math.ceil(time.time()) - time.time() + 0.01)
    second = int(time.time())
    await publish_many(hub, [("u", "a"), ("u", "b")])
    stream = await hub.subscribe(f"/channels/u/events?since={second}")
    assert [m.data for m in await stream.take(2)] == ["a", "b"]


async def test_since_after_every_event_is_live_only(hub: HubServer, backplane: str) -> None:
    await publish_many(hub, [("n", "old")])
    since = await _instant()
    stream = await hub.subscribe(f"/channels/n/events?since={since}")
    await assert_next_is_marker(hub, "n", stream)


async def test_since_on_several_channels_and_with_a_filter(hub: HubServer, backplane: str) -> None:
    await publish_batch(hub, [{"channel": "a", "data": "old"}, {"channel": "b", "data": "old"}])
    since = await _instant()
    await publish_batch(
        hub,
        [
            {"channel": "a", "data": "a1", "event": "x"},
            {"channel": "b", "data": "b1", "event": "y"},
            {"channel": "b", "data": "b2", "event": "x"},
        ],
    )
    both = await hub.subscribe(f"/events?channel=a&channel=b&since={since}")
    assert [m.data for m in await both.take(3)] == ["a1", "b1", "b2"]
    only_x = await hub.subscribe(f"/events?channel=a&channel=b&since={since}&event=x")
    assert [m.data for m in await only_x.take(2)] == ["a1", "b2"]


async def test_last_event_id_wins_over_since(hub: HubServer, backplane: str) -> None:
    ids = await publish_many(hub, [("l", "e0"), ("l", "e1"), ("l", "e2")])
    since = await _instant()
    stream = await hub.subscribe(f"/channels/l/events?since={since}", {"Last-Event-ID": ids[0]})
    assert [m.data for m in await stream.take(2)] == ["e1", "e2"]


async def test_older_than_the_history_is_an_expired_reset(
    make_hub: MakeHub, backplane: str
) -> None:
    """history_size 2: a time before the first of 4 events gets a reset, then the 2 kept."""
    hub = await make_hub(history_size=2)
    since = await _instant()
    ids = await publish_many(hub, [("e", f"e{i}") for i in range(4)])
    stream = await hub.subscribe(f"/channels/e/events?since={since}")
    reset = await stream.next()
    assert reset.event == "reset"
    assert '"reason":"expired"' in reset.data
    assert [m.id for m in await stream.take(2)] == ids[2:]
    await assert_next_is_marker(hub, "e", stream)


async def test_before_the_store_began_is_an_expired_reset(hub: HubServer, backplane: str) -> None:
    """The Unix epoch: what was stored before this backplane began is unknown."""
    ids = await publish_many(hub, [("o", "e0")])
    stream = await hub.subscribe("/channels/o/events?since=0")
    reset = await stream.next()
    assert reset.event == "reset" and '"reason":"expired"' in reset.data
    assert (await stream.next()).id == ids[0]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("yesterday", "is not understood"),
        ("2026-12-07", "is not understood"),
        ("2026-12-07T10:00:00", "is not understood"),  # no offset
        ("-5", "is not understood"),
        ("1e9", "is not understood"),
        # a stable id: test ids must not change between collections (pytest-xdist compares them)
        pytest.param(str(int(time.time()) + 3600), "is in the future", id="in-an-hour"),
        ("2999-01-01T00:00:00Z", "is in the future"),
    ],
)
@pytest.mark.any_backplane("a refusal by the route, before any backplane call")
async def test_bad_since_is_400_json(hub: HubServer, value: str, message: str) -> None:
    query = urllib.parse.quote(value, safe="")
    async with hub.session.get(f"{hub.url}/channels/c/events?since={query}") as response:
        assert response.status == 400
        assert message in (await response.json())["error"]


@pytest.mark.parametrize("other", ["from=start", "replay=c"])
@pytest.mark.any_backplane("a refusal by the route, before any backplane call")
async def test_since_with_another_replay_is_400(hub: HubServer, other: str) -> None:
    async with hub.session.get(f"{hub.url}/channels/c/events?since=1&{other}") as response:
        assert response.status == 400
        assert "since" in (await response.json())["error"]
