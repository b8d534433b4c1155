"""The design ssehub has to beat: SSE broadcast written the way it usually is.

aiohttp + aiohttp-sse, one ``asyncio.Queue`` and one handler task per subscriber,
and one ``await resp.send(...)`` per subscriber per event (aiohttp-sse encodes
the frame again for every subscriber). Same HTTP API as the hub, channels in a
plain dict, no history, no clock channels. Kept deliberately ordinary: the
benchmark's point is to measure what this common shape costs, so do not tune it.

Run: ``python bench/baselines/naive_aiohttp.py --port 8001``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp_sse import sse_response

__all__ = ["Broker", "create_app", "main"]

#: Same channel-name rule as the hub: ``A-Za-z0-9_-.:@/``.
CHANNEL_RE = re.compile(r"^[A-Za-z0-9_\-.:@/]{1,200}$")
#: The hub's first frame; tells EventSource how long to wait before reconnecting.
RETRY_FRAME = b"retry: 3000\r\n\r\n"
#: The hub's listen backlog; aiohttp's default (128) drops SYNs under a connect storm.
BACKLOG = 4096

Message = tuple[str, str, str]  # (id, event, data)


@dataclass
class Broker:
    """Channel name → subscriber queues, plus a position counter per channel."""

    channels: dict[str, set[asyncio.Queue[Message]]] = field(
        default_factory=lambda: defaultdict(set)
    )
    positions: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def publish(self, channel: str, event: str, data: object) -> tuple[str, int]:
        """Queue one event for every subscriber of ``channel``; return (id, count)."""
        self.positions[channel] += 1
        event_id = f"{self.positions[channel]}:{channel}"
        payload = json.dumps(data, separators=(",", ":"))
        queues = self.channels.get(channel, ())
        for queue in queues:
            queue.put_nowait((event_id, event, payload))
        return event_id, len(queues)


BROKER = web.AppKey("broker", Broker)


def _json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _stream(request: web.Request, names: list[str]) -> web.StreamResponse:
    broker = request.app[BROKER]
    queue: asyncio.Queue[Message] = asyncio.Queue()
    # Registered before the headers go out, so nothing published after the
    # client sees the 200 is missed.
    for name in names:
        broker.channels[name].add(queue)
    try:
        async with sse_response(request) as resp:
            await resp.write(RETRY_FRAME)
            while resp.is_connected():
                event_id, event, data = await queue.get()
                await resp.send(data, id=event_id, event=event)
    finally:
        for name in names:
            subscribers = broker.channels.get(name)
            if subscribers is not None:
                subscribers.discard(queue)
                if not subscribers:
                    del broker.channels[name]
    return resp


async def subscribe_one(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if not CHANNEL_RE.match(name):
        return _json_error(400, f"invalid channel name: {name!r}")
    return await _stream(request, [name])


async def subscribe_many(request: web.Request) -> web.StreamResponse:
    names = request.query.getall("channel", [])
    bad = [n for n in names if not CHANNEL_RE.match(n)]
    if not names or bad:
        return _json_error(400, f"invalid or missing channel: {bad or names!r}")
    return await _stream(request, names)


async def publish_one(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if not CHANNEL_RE.match(name):
        return _json_error(400, f"invalid channel name: {name!r}")
    try:
        body = await request.json()
        event = str(body.get("event") or "message")
        data = body["data"]
    except (ValueError, KeyError, AttributeError):
        return _json_error(400, 'body must be {"event": str, "data": any}')
    event_id, count = request.app[BROKER].publish(name, event, data)
    return web.json_response({"id": event_id, "channel": name, "subscribers": count}, status=202)


async def publish_batch(request: web.Request) -> web.Response:
    try:
        items = await request.json()
        parsed = [
            (str(it["channel"]), str(it.get("event") or "message"), it["data"]) for it in items
        ]
    except (ValueError, KeyError, TypeError, AttributeError):
        return _json_error(400, "body must be a list of {channel, event, data}")
    broker = request.app[BROKER]
    results = []
    for channel, event, data in parsed:
        if not CHANNEL_RE.match(channel):
            return _json_error(400, f"invalid channel name: {channel!r}")
        event_id, count = broker.publish(channel, event, data)
        results.append({"id": event_id, "channel": channel, "subscribers": count})
    return web.json_response(results, status=202)


def create_app() -> web.Application:
    app = web.Application()
    app[BROKER] = Broker()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/events", subscribe_many)
    app.router.add_get(r"/channels/{name:.+}/events", subscribe_one)
    app.router.add_post(r"/channels/{name:.+}/events", publish_one)
    app.router.add_post("/publish", publish_batch)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    web.run_app(create_app(), host=args.host, port=args.port, backlog=BACKLOG)


if __name__ == "__main__":
    main()
