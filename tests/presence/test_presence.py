"""Presence channels through HTTP: ``presence/<channel>`` carries join and leave events, coalesced
to one a second per channel, with the grant's ``sub`` on private channels, as private as the
channel; on every backplane, and across hub processes on Redis and NATS."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import jwt
import pytest

from tests.conftest import MakeHub
from tests.support.helpers import hub_wide_count
from tests.support.hubs import MakeHubProcess
from tests.support.sse_client import Message, open_stream

SECRET = "a-subscribe-secret-of-at-least-32-bytes!"


def bearer(sub: str | None, channels: list[str]) -> dict[str, str]:
    claims: dict[str, Any] = {"exp": int(time.time()) + 300, "channels": channels}
    if sub is not None:
        claims["sub"] = sub
    return {"Authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"}


def data(message: Message) -> dict[str, Any]:
    return dict(json.loads(message.data))


async def _changes(watcher: Any, total: int, kind: str) -> list[dict[str, Any]]:
    """The events of ``watcher`` until their changes add up to ``total``, each of ``kind``."""
    found: list[dict[str, Any]] = []
    while sum(event["change"] for event in found) != total:
        message = await watcher.next(timeout=5)
        assert message.event == kind, (message.event, message.data)
        found.append(data(message))
    return found


async def test_joins_and_leaves_are_told_coalesced(make_hub: MakeHub, backplane: str) -> None:
    """Ten subscribers opened at once are told in fewer events than ten (one a second, with
    the net change: one event unless a second's turn falls among them), the count reaching
    ten; eight leaving, likewise; a channel outside the patterns has no presence events."""
    hub = await make_hub(presence=["rooms/*"])
    watcher = await hub.subscribe("/channels/presence/rooms/a/events")
    path = "/channels/rooms/a/events"
    members = await asyncio.gather(*(hub.subscribe(path) for _ in range(10)))
    await hub.subscribe("/channels/other/events")
    joins = await _changes(watcher, 10, "join")
    assert len(joins) < 10
    assert joins[-1] == {"channel": "rooms/a", "subscribers": 10, "change": joins[-1]["change"]}
    await asyncio.gather(*(member.close() for member in members[:8]))
    leaves = await _changes(watcher, -8, "leave")
    assert len(leaves) < 8
    assert leaves[-1]["subscribers"] == 2
    assert await watcher.quiet(1.5) == []


async def test_who_on_a_private_channel_and_its_privacy(make_hub: MakeHub, backplane: str) -> None:
    """On a private channel ``who`` names the grants' subs (once, whatever their number of
    streams); ``presence/C`` is as private as C:
    no grant is a 401, a grant of another channel a 403, a grant of C (or of presence/C) lets
    the watcher in; a grant without a sub adds to the count but names nobody."""
    hub = await make_hub(
        presence=["rooms/*"], private_channels=["rooms/private/*"], subscribe_jwt_secret=SECRET
    )
    path = "/channels/presence/rooms/private/x/events"
    for headers, status in ((None, 401), (bearer("eve", ["rooms/private/y"]), 403)):
        async with hub.session.get(hub.url + path, headers=headers) as answer:
            assert answer.status == status
            assert "error" in await answer.json()
    watcher = await hub.subscribe(path, bearer("watcher", ["rooms/private/x"]))
    other = await hub.subscribe(
        "/channels/presence/rooms/private/x/events", bearer("w2", ["presence/rooms/private/*"])
    )
    room = "/channels/rooms/private/x/events"
    alice, _, _ = await asyncio.gather(
        hub.subscribe(room, bearer("alice", ["rooms/*"])),
        hub.subscribe(room, bearer("bob", ["rooms/*"])),
        hub.subscribe(room, bearer(None, ["rooms/*"])),
    )
    joins = await _changes(watcher, 3, "join")  # one event, unless a second's turn fell between
    assert sorted(sub for event in joins for sub in event.get("who", [])) == ["alice", "bob"]
    assert joins[-1]["subscribers"] == 3
    assert len(await _changes(other, 3, "join")) == len(joins)
    await alice.close()
    left = await watcher.next(timeout=5)
    assert (left.event, data(left)["who"], data(left)["change"]) == ("leave", ["alice"], -1)
    # a second tab of bob's is a subscriber more, not a new who; closing it, one fewer
    tab = await hub.subscribe("/channels/rooms/private/x/events", bearer("bob", ["rooms/*"]))
    assert data(await watcher.next(timeout=5)) == {
        "channel": "rooms/private/x",
        "subscribers": 3,
        "change": 1,
    }
    await tab.close()
    assert data(await watcher.next(timeout=5)) == {
        "channel": "rooms/private/x",
        "subscribers": 2,
        "change": -1,
    }


async def test_presence_of_a_public_channel_names_nobody(make_hub: MakeHub, backplane: str) -> None:
    """A grant's sub on a stream that also carries a public channel is not told for that one."""
    hub = await make_hub(presence=["*"], private_channels=["secret/*"], subscribe_jwt_secret=SECRET)
    watcher = await hub.subscribe("/channels/presence/lobby/events")
    await hub.subscribe("/events?channel=lobby&channel=secret/a", bearer("carol", ["secret/*"]))
    joined = await watcher.next(timeout=5)
    assert data(joined) == {"channel": "lobby", "subscribers": 1, "change": 1}


async def test_presence_has_history_and_resumes(make_hub: MakeHub, backplane: str) -> None:
    """Presence events are events: a watcher that comes later reads them from the start, and
    one that resumes from an id gets what followed it."""
    hub = await make_hub(presence=["rooms/*"])
    first = await hub.subscribe("/channels/rooms/b/events")
    watcher = await hub.subscribe("/channels/presence/rooms/b/events")
    joined = await watcher.next(timeout=5)
    await first.close()
    left = await watcher.next(timeout=5)
    replayed = await hub.subscribe("/channels/presence/rooms/b/events?from=start")
    assert [m.id for m in await replayed.take(2)] == [joined.id, left.id]
    resumed = await hub.subscribe("/channels/presence/rooms/b/events", {"Last-Event-ID": joined.id})
    assert (await resumed.next()).id == left.id


@pytest.mark.slow
async def test_presence_across_processes(make_hub_process: MakeHubProcess, backplane: str) -> None:
    """Two hub processes: joins on each reach the watcher on either, as events of one channel
    (one sequence of ids), their changes adding up, and the count hub-wide once the processes
    have shared their counts; a process that stops tells its leaves."""
    if backplane == "memory":
        pytest.skip("one process: nothing is shared")
    one, two = [await make_hub_process(presence="rooms/*", heartbeat=0.5) for _ in range(2)]
    async with aiohttp_session() as session:
        watcher = await live(session, f"{one.url}/channels/presence/rooms/c/events")
        await live(session, f"{one.url}/channels/rooms/c/events")
        await live(session, f"{two.url}/channels/rooms/c/events")
        seen = [await watcher.next(timeout=10), await watcher.next(timeout=10)]
        assert [m.event for m in seen] == ["join", "join"]
        assert sum(data(m)["change"] for m in seen) == 2
        # a third joins on the second process once it counts the first one's subscriber (the
        # counts are shared every 2 s): /channels adds the others' counts to its own
        await hub_wide_count(session, two.url, "rooms/c", 2)
        await live(session, f"{two.url}/channels/rooms/c/events")
        third = await watcher.next(timeout=10)
        assert data(third) == {"channel": "rooms/c", "subscribers": 3, "change": 1}
        # a process that stops tells the leaves of the streams it ended
        await two.stop()
        gone = await watcher.next(timeout=10)
        assert (gone.event, data(gone)["change"]) == ("leave", -2)
        await watcher.close()


def aiohttp_session() -> Any:
    import aiohttp

    return aiohttp.ClientSession()


async def live(session: Any, url: str) -> Any:
    """A stream that is registered (its retry hint is in)."""
    stream = await open_stream(session, url)
    while stream.parser.retry is None:
        chunk = await stream.response.content.readany()
        assert chunk, "the stream ended before its retry hint"
        stream.parser.feed(chunk)
    return stream


@pytest.mark.any_backplane("a refusal by the route, before any backplane call")
async def test_only_the_hub_writes_a_presence_channel(make_hub: MakeHub) -> None:
    """A publish to presence/C (C tracked) is a 400 naming it, on every publish route; a
    channel named presence/... that no pattern tracks is an ordinary one."""
    hub = await make_hub(presence=["rooms/*"])
    answer = await hub.publish("presence/rooms/a", "fake", event="join", status=400)
    assert answer["error"] == "'presence/rooms/a' is a presence channel: only the hub writes it"
    async with hub.session.post(
        f"{hub.url}/publish", json=[{"channel": "presence/rooms/a", "data": 1}]
    ) as response:
        assert response.status == 400
        assert "only the hub writes it" in (await response.json())["error"]
    await hub.publish("presence/other", "an ordinary channel")


async def test_who_through_the_ai_sdk_and_durable_routes(make_hub: MakeHub, backplane: str) -> None:
    """The AI SDK's stream, a Durable Stream's SSE read and its long-poll, on private channels,
    name their grant's sub in presence as the native route does, joining and leaving."""
    hub = await make_hub(
        presence=["rooms/*"],
        private_channels=["rooms/*"],
        subscribe_jwt_secret=SECRET,
        durable_long_poll=30,
    )
    grant = bearer("watcher", ["*"])
    await hub.publish("rooms/ai", {"type": "start"})  # else the AI SDK's route answers 204
    async with hub.session.put(f"{hub.url}/v1/stream/rooms/ds") as made:
        if made.status == 501:
            pytest.skip((await made.json())["error"])
        assert made.status == 201, await made.text()
    ai_watcher = await hub.subscribe("/channels/presence/rooms/ai/events", grant)
    ds_watcher = await hub.subscribe("/channels/presence/rooms/ds/events", grant)
    # neither dialect sends a retry hint (hub.subscribe waits for it): their first bytes
    ai = await open_stream(hub.session, f"{hub.url}/ai/rooms/ai/stream", bearer("alice", ["*"]))
    sse = await open_stream(
        hub.session, f"{hub.url}/v1/stream/rooms/ds?offset=-1&live=sse", bearer("bob", ["*"])
    )
    hub.streams += [ai, sse]
    await ai.next(timeout=5)
    await sse.next(timeout=5)
    joined = await ai_watcher.next(timeout=5)
    assert (joined.event, data(joined)["who"]) == ("join", ["alice"])
    joined = await ds_watcher.next(timeout=5)
    assert (joined.event, data(joined)["who"]) == ("join", ["bob"])
    poll = asyncio.ensure_future(
        hub.session.get(
            f"{hub.url}/v1/stream/rooms/ds?offset=now&live=long-poll",
            headers=bearer("carol", ["rooms/ds"]),
        )
    )
    try:
        joined = await ds_watcher.next(timeout=5)
        assert (joined.event, data(joined)["who"]) == ("join", ["carol"])
        await hub.publish("rooms/ds", {"n": 1})  # wakes the long-poll: carol leaves
        async with await poll as answered:
            assert answered.status == 200, await answered.text()
    finally:
        poll.cancel()
    left = await ds_watcher.next(timeout=5)
    assert (left.event, data(left)["who"]) == ("leave", ["carol"])
    await ai.close()
    left = await ai_watcher.next(timeout=5)
    assert (left.event, data(left)["who"], data(left)["change"]) == ("leave", ["alice"], -1)
    await sse.close()
    left = await ds_watcher.next(timeout=5)
    assert (left.event, data(left)["who"], data(left)["change"]) == ("leave", ["bob"], -1)
