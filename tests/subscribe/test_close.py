"""Closing a finished channel through HTTP (``POST /channels/{name}/close``), on every backplane:
its streams end with ``event: close`` after its last event, its history stays readable, its
publishes are refused (409), and closing is idempotent; across hub processes too.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import HubServer, MakeHub
from tests.support.helpers import assert_next_is_marker

TOKEN = "publish-token-0123456789"
SCOPED = "scoped-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CLOSE = '{"channel":"answers/1"}'


async def close(hub: HubServer, name: str, status: int = 200, **kw: Any) -> dict[str, Any]:
    async with hub.session.post(f"{hub.url}/channels/{name}/close", **kw) as response:
        assert response.content_type == "application/json"
        answer: dict[str, Any] = await response.json()
        assert response.status == status, answer
        return answer


async def test_close_ends_streams_after_their_last_event(hub: HubServer, backplane: str) -> None:
    """Every stream gets the events published before the close, then ``event: close``; one on
    that channel alone ends, one on several goes on with the others."""
    alone = await hub.subscribe("/channels/answers/1/events")
    several = await hub.subscribe("/events?channel=answers/1&channel=news")
    ids = [(await hub.publish("answers/1", f"token {n}"))["id"] for n in range(3)]
    assert await close(hub, "answers/1") == {
        "channel": "answers/1",
        "already_closed": False,
        "subscribers": 2,
    }
    for stream in (alone, several):
        *events, end = await stream.take(4)
        assert [e.id for e in events] == ids
        assert (end.event, end.data) == ("close", CLOSE)
    assert await alone.until_end() == []
    await assert_next_is_marker(hub, "news", several)


async def test_a_closed_channel_afterwards(hub: HubServer, backplane: str) -> None:
    """Publishes answer 409 naming it (a batch including it publishes nothing); its history is
    read with from=start or Last-Event-ID, then close and the end; a live-only subscriber gets
    close at once (200, not 204); closing again says it was closed already."""
    ids = [(await hub.publish("answers/1", f"token {n}"))["id"] for n in range(3)]
    await close(hub, "answers/1", json={})
    refused = await hub.publish("answers/1", "more", status=409)
    assert "'answers/1' is closed" in refused["error"]
    whole = await hub.subscribe("/channels/answers/1/events?from=start")
    *events, end = await whole.until_end()
    assert [e.id for e in events] == ids and (end.event, end.data) == ("close", CLOSE)
    resumed = await hub.subscribe("/channels/answers/1/events", {"Last-Event-ID": ids[0]})
    *events, end = await resumed.until_end()
    assert [e.id for e in events] == ids[1:] and end.event == "close"
    live = await hub.subscribe("/channels/answers/1/events")
    assert [m.event for m in await live.until_end()] == ["close"]
    again = await close(hub, "answers/1")
    assert again["already_closed"] is True


async def test_the_channel_list_names_a_closed_channels_newest_event(
    hub: HubServer, backplane: str
) -> None:
    """GET /channels lists closed channels with their newest event's id, many at once (on NATS
    the close marker says it, where a read per closed channel made the list take seconds);
    one closed with nothing in it has none."""
    newest = {}
    for n in range(120):
        ids = [(await hub.publish(f"done/{n}", f"token {k}"))["id"] for k in range(2)]
        await close(hub, f"done/{n}")
        newest[f"done/{n}"] = ids[-1]
    await close(hub, "empty/1")
    async with hub.session.get(f"{hub.url}/channels") as response:
        assert response.status == 200
        listed = {c["name"]: c["last_id"] for c in await response.json()}
    assert {name: listed.get(name) for name in newest} == newest
    assert listed.get("empty/1") is None


async def test_a_batch_naming_a_closed_channel_publishes_nothing(
    hub: HubServer, backplane: str
) -> None:
    await close(hub, "answers/1")
    async with hub.session.post(
        f"{hub.url}/publish",
        json=[{"channel": "news", "data": 1}, {"channel": "answers/1", "data": 2}],
    ) as response:
        assert response.status == 409 and "'answers/1'" in (await response.json())["error"]
    stream = await hub.subscribe("/events?channel=news&channel=answers/1&from=start")
    first = await stream.next()
    assert (first.event, first.data) == ("close", CLOSE), "the refused batch stored news"
    await assert_next_is_marker(hub, "news", stream)


async def test_close_refusals(make_hub: MakeHub, backplane: str) -> None:
    """Publish auth and its scope, a body other than {}, a clock, a deleted channel."""
    hub = await make_hub(
        publish_tokens=[TOKEN, {"token": SCOPED, "channels": ["jobs/*"]}], clocks_on_demand=True
    )
    assert "error" in await close(hub, "news", 401)
    scoped = {"Authorization": f"Bearer {SCOPED}"}
    assert "'news'" in (await close(hub, "news", 403, headers=scoped))["error"]
    assert (await close(hub, "jobs/1", headers=scoped))["already_closed"] is False
    wrong = await close(hub, "news", 400, headers=AUTH, json={"now": True})
    assert "must be {}" in wrong["error"]
    assert "clock" in (await close(hub, "time/UTC/1", 400, headers=AUTH))["error"]
    assert "error" in await close(hub, "bad name!", 400, headers=AUTH)
    await hub.publish("news", "x", headers=AUTH)
    async with hub.session.delete(f"{hub.url}/channels/news", headers=AUTH) as response:
        assert response.status == 200
    assert "deleted" in (await close(hub, "news", 410, headers=AUTH))["error"]


async def test_a_closed_channel_can_be_deleted(hub: HubServer, backplane: str) -> None:
    await hub.publish("answers/1", "x")
    await close(hub, "answers/1")
    async with hub.session.delete(f"{hub.url}/channels/answers/1") as response:
        assert response.status == 200
    async with hub.session.get(f"{hub.url}/channels/answers/1/events?from=start") as response:
        assert response.status == 204


async def test_close_reaches_streams_on_another_process(make_hub: MakeHub, backplane: str) -> None:
    """Two hubs on one backplane: a close on one ends the other's streams after the events
    published before it, from either."""
    if backplane == "memory":
        pytest.skip("one process: the memory backplane is not shared")
    first, second = await make_hub(), await make_hub()
    stream = await second.subscribe("/channels/answers/1/events")
    ids = [(await hub.publish("answers/1", n))["id"] for n, hub in enumerate([first, second])]
    await close(first, "answers/1")
    *events, end = await stream.until_end()
    assert [e.id for e in events] == ids and end.event == "close"
    await second.publish("answers/1", "late", status=409)
