"""Several channels on one connection: ``/events?channel=a&channel=b``.

Ids are ``<position>:<channel>``: the channel part tells a multi-channel subscriber where an event
came from, and positions from one hub-wide sequence order the merged stream.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import HubServer, MakeHub
from tests.support.helpers import ID_RE, assert_next_is_marker, gauge, position, publish_batch


async def channels_listed(hub: HubServer) -> dict[str, dict[str, Any]]:
    async with hub.session.get(f"{hub.url}/channels") as response:
        return {c["name"]: c for c in await response.json()}


async def test_one_connection_many_channels(hub: HubServer, backplane: str) -> None:
    """One stream carries every named channel, and counts as one subscriber connection."""
    stream = await hub.subscribe("/events?channel=orders&channel=job-42&channel=job/7")
    assert await gauge(hub, "hub_subscribers") == 1
    listed = await channels_listed(hub)
    for name in ("orders", "job-42", "job/7"):
        assert listed[name]["subscribers"] == 1
    sent = [await hub.publish(name, name) for name in ("job-42", "orders", "job/7", "elsewhere")]
    got = await stream.take(3)
    assert [(m.data, m.id) for m in got] == [(r["channel"], r["id"]) for r in sent[:3]]
    await assert_next_is_marker(hub, "orders", stream)


async def test_ids_name_the_channel(hub: HubServer, backplane: str) -> None:
    """Every id is ``<position>:<channel>``, so a subscriber can tell channels apart."""
    stream = await hub.subscribe("/events?channel=a&channel=b:c&channel=d/e@f")
    for name in ("a", "b:c", "d/e@f"):
        receipt = await hub.publish(name, "x")
        message = await stream.next()
        assert message.id == receipt["id"]
        match = ID_RE.fullmatch(message.id)
        assert match is not None, message.id
        assert match["channel"] == name


async def test_delivery_in_id_order(hub: HubServer, backplane: str) -> None:
    """Concurrent publishes on several channels reach a multi-channel stream in id order."""
    stream = await hub.subscribe("/events?channel=a&channel=b&channel=c")

    async def burst(channel: str) -> list[str]:
        return [(await hub.publish(channel, i))["id"] for i in range(40)]

    batches = await asyncio.gather(
        burst("a"),
        burst("b"),
        burst("c"),
        publish_batch(hub, [{"channel": n, "data": "batch"} for n in "cbacba"]),
    )
    sent: set[str] = {i for ids in batches[:3] for i in ids}
    sent |= {r["id"] for r in batches[3]["events"]}
    got = await stream.take(len(sent))
    positions = [position(m.id) for m in got]
    assert positions == sorted(positions)
    assert {m.id for m in got} == sent
    for channel, ids in zip("abc", batches[:3], strict=True):
        assert [m.id for m in got if m.id.endswith(f":{channel}") and m.data != "batch"] == ids


async def test_same_frame_as_single_channel_stream(hub: HubServer, backplane: str) -> None:
    """Event type, data and id are the same on single- and multi-channel streams."""
    single = await hub.subscribe("/channels/a/events")
    multi = await hub.subscribe("/events?channel=a&channel=b")
    await hub.publish("a", {"k": [1, 2]}, event="custom")
    one, other = await single.next(), await multi.next()
    assert (one.event, one.data, one.id) == (other.event, other.data, other.id)
    assert one.event == "custom"


async def test_repeated_channel_counts_once(hub: HubServer, backplane: str) -> None:
    """Naming a channel twice on one stream delivers its events once."""
    stream = await hub.subscribe("/events?channel=a&channel=a&channel=b")
    receipt = await hub.publish("a", "once")
    assert receipt["subscribers"] == 1
    assert (await stream.next()).id == receipt["id"]
    await assert_next_is_marker(hub, "a", stream)


@pytest.mark.any_backplane
async def test_no_channel_is_400(hub: HubServer) -> None:
    """``/events`` without any channel is a 400 that says how to name them."""
    async with hub.session.get(f"{hub.url}/events") as response:
        assert response.status == 400
        assert "at least one channel" in (await response.json())["error"]


@pytest.mark.any_backplane
async def test_max_stream_channels(make_hub: MakeHub) -> None:
    """More channels on one stream than ``max_stream_channels`` is a 400 naming the setting."""
    hub = await make_hub(max_stream_channels=2)
    ok = await hub.subscribe("/events?channel=a&channel=b")
    await ok.close()
    async with hub.session.get(f"{hub.url}/events?channel=a&channel=b&channel=c") as response:
        assert response.status == 400
        assert "max_stream_channels" in (await response.json())["error"]


@pytest.mark.parametrize("bad", ["", "a b", "x" * 201, "semi;colon"])
@pytest.mark.any_backplane
async def test_one_bad_channel_refuses_the_stream(hub: HubServer, bad: str) -> None:
    """A bad channel name among good ones is a 400 for the whole stream."""
    async with hub.session.get(
        f"{hub.url}/events", params=[("channel", "good"), ("channel", bad)]
    ) as response:
        assert response.status == 400
        assert "invalid channel name" in (await response.json())["error"]
    assert await gauge(hub, "hub_subscribers") == 0
