"""How many idempotent producers a Durable Stream remembers, through HTTP, on every backplane:
past the cap (10,000 on memory and Redis, 1,000 on NATS) the least recently seen is forgotten,
so its next append (seq 1) is a gap answered ``409`` expecting seq 0, while the producers seen
since are still known. Without a cap, made-up producer ids would grow a stream without a TTL
(which lives until deleted) for ever.
"""

from __future__ import annotations

import asyncio

import pytest

from hub.backplane.nats_stream_record import MAX_PRODUCERS as NATS_MAX
from hub.backplane.streams import MAX_PRODUCERS
from tests.conftest import HubServer, MakeHub
from tests.dialects.test_durable_streams import durable_hub, name, put


async def _append(hub: HubServer, path: str, producer: str, seq: int) -> tuple[int, str]:
    headers = {
        "Content-Type": "text/plain",
        "Producer-Id": producer,
        "Producer-Epoch": "0",
        "Producer-Seq": str(seq),
    }
    async with hub.session.post(f"{hub.url}/v1/stream/{path}", data=b"x", headers=headers) as r:
        return r.status, r.headers.get("Producer-Expected-Seq", "")


@pytest.mark.slow
async def test_the_least_recently_seen_producer_is_forgotten(
    make_hub: MakeHub, backplane: str
) -> None:
    cap = NATS_MAX if backplane == "nats" else MAX_PRODUCERS
    hub = await durable_hub(make_hub)
    path = name()
    await put(hub, path, "text/plain")
    assert (await _append(hub, path, "oldest", 0))[0] == 200  # the least recently seen
    producers = [f"p{n}" for n in range(cap)]  # one more than the cap, with it
    lanes = 16

    async def lane(start: int) -> None:
        for producer in producers[start::lanes]:
            assert (await _append(hub, path, producer, 0))[0] == 200

    await asyncio.gather(*(lane(n) for n in range(lanes)))
    assert await _append(hub, path, "oldest", 1) == (409, "0")  # forgotten: new, so seq 0
    # the last seen of every lane is known: its seq 1 follows on
    for producer in producers[-lanes:]:
        assert await _append(hub, path, producer, 1) == (200, ""), producer
