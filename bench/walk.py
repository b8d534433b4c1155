"""Count the walk of one publish and one ``Last-Event-ID`` resume through ``hub/``.

``PYTHONPATH=<checkout> python bench/walk.py memory|redis://...`` starts that checkout's hub in
process on 127.0.0.1, traces (``sys.setprofile``) every call into a ``hub/`` module while one
event is published to a live stream and while one resume reads up to it, and prints the calls,
distinct functions, files crossed and the *climbs*: calls from a lower room into a higher one
(by ``RANKS``). Attribute reads are not calls: a lower room reading the hub's fields (main's
``hub.delivered``, ``hub.config``, ...) is not counted. Redis keys it makes are deleted.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path
from types import FrameType
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

import hub
from hub.app import create_app
from hub.config import load

ROOT = Path(hub.__file__).resolve().parent
#: Lower number, lower room (on main the outlet was the writer, below the subscription).
RANKS = {
    **dict.fromkeys(("events", "sse", "metrics", "config", "tasks", "limits", "clients"), 0),
    **dict.fromkeys(("ticker", "auth"), 0),
    "backplane": 1, "view": 2, "writer": 3, "outlet_main": 3, "stream": 4, "subscription": 4,
    "channel": 5, "census": 5, "deadlines": 5, "ask": 5, "hub": 6, "outlet": 7, "grants": 7,
    "api": 8,
}  # fmt: skip
calls: list[tuple[str, str, str]] = []


def _room(path: str) -> str | None:
    try:
        rel = Path(path).resolve().relative_to(ROOT)
    except ValueError:
        return "aiohttp_sse" if "aiohttp_sse" in path else None
    return ".".join(rel.with_suffix("").parts)


def _rank(room: str) -> int:
    head = room.split(".")[0]
    if head == "outlet" and not (ROOT / "writer.py").exists():
        head = "outlet_main"
    return RANKS.get(head, 9)


def _profile(frame: FrameType, event: str, arg: Any) -> None:
    if event != "call" or (callee := _room(frame.f_code.co_filename)) is None:
        return
    back, caller = frame.f_back, None
    while back is not None and (caller := _room(back.f_code.co_filename)) is None:
        back = back.f_back
    calls.append((caller or "-", callee, frame.f_code.co_name))


def _report(name: str) -> None:
    files = {callee for _, callee, _ in calls}
    distinct = {(callee, function) for _, callee, function in calls}
    climbs = {c for c in calls if c[0] not in ("-", c[1]) and _rank(c[0]) < _rank(c[1])}
    print(f"{name}: {len(calls)} calls, {len(distinct)} functions, {len(files)} files, "
          f"{len(climbs)} climbs")  # fmt: skip
    print("  files:", ", ".join(sorted(files)))
    for climb in sorted(climbs):
        print("  climb:", " -> ".join(climb[:2]), climb[2])


async def _traced(name: str, work: Any) -> None:
    calls.clear()
    sys.setprofile(_profile)
    try:
        await work
    finally:
        sys.setprofile(None)
    _report(name)


async def main(backplane: str) -> None:
    prefix = f"ssehub-test:walk-{uuid.uuid4().hex[:8]}:"
    config = load(
        path=os.devnull, env={}, overrides={"backplane": backplane, "redis_prefix": prefix}
    )
    server = TestServer(create_app(config), host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    try:
        async with aiohttp.ClientSession() as session:
            live = await session.get(f"{url}/channels/walk/events")
            await live.content.readuntil(b"\n\n")
            ids = []
            for i in range(3):
                async with session.post(f"{url}/channels/walk/events", json={"data": i}) as r:
                    ids.append((await r.json())["id"])

            async def publish() -> None:
                async with session.post(f"{url}/channels/walk/events", json={"data": "x"}) as r:
                    await r.json()
                await live.content.readuntil(b"data: x\n\n")

            async def resume() -> None:
                headers = {"Last-Event-ID": ids[0]}
                resumed = await session.get(f"{url}/channels/walk/events", headers=headers)
                await resumed.content.readuntil(b"data: x\n\n")
                resumed.close()

            await asyncio.sleep(0.2)
            await _traced(f"publish ({backplane})", publish())
            await _traced(f"resume ({backplane})", resume())
            live.close()
    finally:
        await server.close()
        if backplane.startswith("redis"):
            import redis.asyncio as aioredis

            client = aioredis.Redis.from_url(backplane)
            keys = [key async for key in client.scan_iter(match=prefix + "*")]
            if keys:
                await client.delete(*keys)
            await client.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "memory"))
