"""Backplane limits seen through HTTP: the memory backplane's total history bound, and a Redis
that answers with errors (OOM) and then recovers.

The backplane contract itself (no HTTP) is tests/backplane/test_backplane.py; here a client sees
what the limits mean for it: a resume from before the oldest retained event gets ``reset``
``expired``, and a Redis error is a 503 / ``200 + retry:`` from which publish, subscribe and
/readyz recover.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import orjson
import pytest

from tests.conftest import HubServer, MakeHub
from tests.support.backplane_rig import OwnRedis
from tests.support.helpers import eventually, publish_batch
from tests.support.sse_client import open_stream


@pytest.mark.any_backplane  # the memory backplane's own bound (Redis: history_size, maxmemory)
async def test_max_history_bytes_drops_the_oldest(make_hub: MakeHub) -> None:
    """Past max_history_bytes in all the channels together, the oldest events go first: what is
    retained is the newest part of what was published, a resume from within it is exact, and one
    from before it gets reset "expired" and then everything retained."""
    hub = await make_hub(max_history_bytes=20_000)
    payload = "x" * 1000
    ids = []
    for n in range(30):
        ids.append((await hub.publish("a" if n % 2 else "b", payload))["id"])
    answer = await publish_batch(hub, [{"channel": c, "data": payload} for c in "ab" * 15])
    ids += [receipt["id"] for receipt in answer["events"]]
    async with hub.session.get(f"{hub.url}/healthz") as response:
        held = (await response.json())["backplane"]["history_bytes"]
    assert 0 < held <= 20_000
    everything = await hub.subscribe("/events?channel=a&channel=b&from=start")
    kept = [m.id for m in await everything.quiet(0.5)]
    assert 1 <= len(kept) < len(ids) and kept == ids[-len(kept) :], kept
    resumed = await hub.subscribe("/events?channel=a&channel=b", {"Last-Event-ID": ids[0]})
    reset = await resumed.next()
    assert reset.event == "reset"
    assert orjson.loads(reset.data) == {"reason": "expired", "oldest_id": kept[0]}
    assert [m.id for m in await resumed.take(len(kept))] == kept
    inside = await hub.subscribe("/events?channel=a&channel=b", {"Last-Event-ID": kept[0]})
    assert [m.id for m in await inside.take(len(kept) - 1)] == kept[1:]


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    server = OwnRedis()  # a redis-server of this test's own: it is reconfigured (CONFIG SET)
    yield server
    server.stop()


async def _ready(hub: HubServer) -> int:
    async with hub.session.get(f"{hub.url}/readyz") as response:
        return response.status


@pytest.mark.redis
@pytest.mark.any_backplane  # its own Redis, not the shared one
async def test_redis_oom_then_recovery_through_http(make_hub: MakeHub, own_redis: OwnRedis) -> None:
    """Redis answering OOM: publish is a 503 JSON with Retry-After, a new subscriber gets 200
    (never a 500 a browser gives up on), /readyz says 503. Once Redis takes writes again,
    /readyz says 200, a new subscriber gets a live stream (no hang) and publishes reach both
    old and new subscribers."""
    hub = await make_hub(backplane=own_redis.url)
    old = await hub.subscribe("/channels/a/events")
    first = await hub.publish("a", "before")
    assert (await old.next()).id == first["id"]
    await own_redis.command("CONFIG", "SET", "maxmemory-policy", "noeviction")
    await own_redis.command("CONFIG", "SET", "maxmemory", "1")
    async with hub.session.post(f"{hub.url}/channels/a/events", json={"data": "oom"}) as response:
        assert response.status == 503
        assert "Retry-After" in response.headers
        assert "not published" in (await response.json())["error"]
    await eventually(lambda: _is(hub, 503), timeout=10, what="/readyz 503 under OOM")
    during = await open_stream(hub.session, f"{hub.url}/channels/b/events")
    hub.streams.append(during)
    assert during.response.status == 200
    assert during.response.content_type == "text/event-stream"
    await during.close()
    await own_redis.command("CONFIG", "SET", "maxmemory", "0")
    await eventually(lambda: _is(hub, 200), timeout=15, what="/readyz 200 after recovery")
    async with asyncio.timeout(10):
        new = await hub.subscribe("/events?channel=a&channel=c")
    later = await hub.publish("a", "after")
    assert (await new.next()).id == later["id"]
    assert (await old.next()).id == later["id"]
    other = await hub.publish("c", "new channel")
    assert (await new.next()).id == other["id"]


async def _is(hub: HubServer, status: int) -> bool:
    return await _ready(hub) == status


@pytest.mark.any_backplane  # the memory backplane's own bound
async def test_max_history_bytes_counts_tags(make_hub: MakeHub) -> None:
    """Tags are kept beside the frame (up to 16 of 129 characters): the bound counts them, so
    events whose tags are most of what they keep are dropped as soon as their frames would be:
    what is retained, its frames and its tags, fits the bound, and /healthz says so."""
    hub = await make_hub(max_history_bytes=50_000)
    tags = {f"t{n:02d}-{'n' * 60}": "v" * 64 for n in range(16)}
    tag_bytes = sum(len(name) + 1 + len(value) for name, value in tags.items())
    ids = []
    for _ in range(100):  # 100 frames of ~60 bytes: 6 KB; their tags: 206 KB
        answer = await publish_batch(hub, [{"channel": "t", "data": 1, "tags": tags}])
        ids.append(answer["events"][0]["id"])
    everything = await hub.subscribe("/channels/t/events?from=start")
    kept = await everything.quiet(0.5)
    assert kept and [m.id for m in kept] == ids[-len(kept) :]
    frames = sum(len(f"id: {m.id}\ndata: 1\n\n") for m in kept)
    assert frames + len(kept) * tag_bytes <= 50_000, len(kept)
    async with hub.session.get(f"{hub.url}/healthz") as response:
        held = (await response.json())["backplane"]["history_bytes"]
    assert frames + len(kept) * tag_bytes < held <= 50_000
