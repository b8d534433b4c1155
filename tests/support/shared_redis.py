"""The suite is a guest on a shared Redis: a key prefix per test under this run's own prefix,
deleted by whoever made it, and a check at the end that nothing of the run is left.

The Redis server is the one at ``SSEHUB_TEST_REDIS`` (default redis://127.0.0.1:6379/0), which
must be up (``scripts/test`` starts one). It is shared (other runs, other checkouts), so every
prefix comes from ``redis_prefix()`` and starts with this run's own ``RUN_PREFIX``; whoever makes
a prefix deletes its keys when done (``delete_prefix``, SCAN + DEL, never FLUSHDB), and at the end
of the session tests/conftest.py fails the run if ``left_over()`` finds any key of the run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import redis.asyncio as redis

__all__ = ["REDIS_URL", "RUN_PREFIX", "delete_prefix", "left_over", "redis_prefix", "used"]

REDIS_URL = os.environ.get("SSEHUB_TEST_REDIS", "redis://127.0.0.1:6379/0")

#: Every Redis key this run writes starts with this, so the leftover check sees exactly this run's
#: keys and never another run's.
RUN_PREFIX = f"ssehub-test:{uuid.uuid4().hex[:8]}:"
#: Set once this run has handed out a prefix on the shared Redis: only then is there anything to
#: check at the end (a run without Redis never connects to it).
_used = False


def used() -> bool:
    """Whether this run has handed out a prefix on the shared Redis."""
    return _used


def redis_prefix(shared: bool = True) -> str:
    """A fresh ``redis_prefix`` setting for a test, under this run's ``RUN_PREFIX``.

    ``shared``: it will be used on the shared Redis (so the end-of-run check looks).
    """
    global _used
    _used = _used or shared
    return f"{RUN_PREFIX}{uuid.uuid4().hex[:12]}:"


async def _keys(client: redis.Redis, prefix: str) -> AsyncIterator[bytes]:
    # The prefixes are made of hex digits and colons: nothing in them is a glob character.
    async for key in client.scan_iter(match=f"{prefix}*", count=1000):
        yield key


async def delete_prefix(prefix: str, url: str = REDIS_URL) -> int:
    """Delete every key under ``prefix`` (SCAN MATCH + DEL); returns how many were deleted.

    Call it once nothing writes there any more (hubs stopped), or their next write comes back.
    """
    assert prefix.startswith(RUN_PREFIX), f"{prefix!r} is not this run's to delete"
    client = redis.Redis.from_url(url)
    try:
        batch: list[bytes] = []
        deleted = 0
        async for key in _keys(client, prefix):
            batch.append(key)
            if len(batch) >= 500:
                deleted += await client.delete(*batch)
                batch.clear()
        if batch:
            deleted += await client.delete(*batch)
        return deleted
    finally:
        await client.aclose()


async def left_over(url: str = REDIS_URL) -> list[str]:
    """The keys of this run still in the shared Redis."""
    client = redis.Redis.from_url(url)
    try:
        return sorted([key.decode(errors="replace") async for key in _keys(client, RUN_PREFIX)])
    finally:
        await client.aclose()
