"""The suite is a good guest on the shared Redis: it deletes its own keys and nobody else's."""

from __future__ import annotations

import pytest
import redis.asyncio as redis

from hub.backplane.redis_settings import RedisSettings
from tests.conftest import REDIS_URL, RUN_PREFIX, MakeHub, delete_prefix, redis_prefix

pytestmark = pytest.mark.redis


async def test_delete_prefix_deletes_only_that_prefix() -> None:
    """Every key under the prefix goes, with or without a TTL, of any type, past one SCAN batch;
    a key of a neighbouring prefix (same start, longer) stays."""
    mine, neighbour = redis_prefix(), redis_prefix()
    client = redis.Redis.from_url(REDIS_URL)
    try:
        async with client.pipeline(transaction=False) as pipe:
            for n in range(1200):
                pipe.set(f"{mine}k{n}", n)  # no TTL, like the hub's sequence counter
            pipe.xadd(f"{mine}stream", {"a": "1"})
            pipe.set(f"{mine}ttl", 1, ex=60)
            pipe.set(f"{neighbour}kept", 1)
            await pipe.execute()
        assert await delete_prefix(mine) == 1202
        assert [key async for key in client.scan_iter(match=f"{mine}*")] == []
        assert await client.get(f"{neighbour}kept") == b"1"
    finally:
        await delete_prefix(neighbour)
        await client.aclose()


async def test_delete_prefix_refuses_what_is_not_this_runs() -> None:
    """Another run's keys, or the hub's default prefix, are never deleted."""
    for prefix in ("ssehub:", "ssehub-test:", "ssehub-test:0123abcd:"):
        assert not prefix.startswith(RUN_PREFIX)
        with pytest.raises(AssertionError, match="not this run's"):
            await delete_prefix(prefix)


async def test_make_hub_prefix_is_this_runs(make_hub: MakeHub, backplane: str) -> None:
    """make_hub's hubs write under RUN_PREFIX (what the end-of-run check looks at)."""
    hub = await make_hub()
    assert hub.config.section(RedisSettings).prefix.startswith(RUN_PREFIX)
    await hub.publish("guest", "x")
