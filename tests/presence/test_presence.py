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

from tests.conftest import HubServer, MakeHub
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


async def test_joins_and_leaves_are_told_coalesced(make_hub: MakeHub, backplane: str) -> None:
    """Three subscribers within a second are one ``join`` (+3); two leaving, one ``leave``
    (-2); a channel outside the patterns has no presence events."""
    hub = await make_hub(presence=["rooms/*"])
    watcher = await hub.subscribe("/channels/presence/rooms/a/events")
    members = [await hub.subscribe("/channels/rooms/a/events") for _ in range(3)]
    await hub.subscribe("/channels/other/events")
    joined = await watcher.next(timeout=5)
    assert joined.event == "join"
    assert data(joined) == {"channel": "rooms/a", "subscribers": 3, "change": 3}
    assert joined.id.endswith(":presence/rooms/a")
    for member in members[:2]:
        await member.close()
    left = await watcher.next(timeout=5)
    assert left.event == "leave"
    assert data(left) == {"channel": "rooms/a", "subscribers": 1, "change": -2}
    assert await watcher.quiet(1.5) == []
