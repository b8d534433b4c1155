"""The framework's own floor for a publish: an aiohttp handler that does nothing else.

``POST /channels/{name}/events`` reads the JSON body, parses it with orjson and answers a JSON
receipt (``202 {"id", "channel", "subscribers": 0}``); ``POST /publish`` the same for a JSON
array. No channels, no history, no checks, no subscribers (``GET`` of a stream is a 404): what
is left of a single publish is aiohttp's request path, which the hub's publish row is
compared with (``hub÷aiohttp``: the hub's own work per request). It runs on the event loop the
hub would pick here: uvloop, with aiofastnet's transports when that is installed and
``SSEHUB_AIOFASTNET=1`` (the start line says which), so the ratio compares handlers, not
loops.

Run: ``python bench/baselines/bare_aiohttp.py --port 8001``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable

import orjson
from aiohttp import web

__all__ = ["create_app", "main"]

BACKLOG = 4096
_JSON = {"Content-Type": "application/json"}


async def healthz(request: web.Request) -> web.Response:
    return web.Response(body=b'{"status":"ok"}', headers=_JSON)


async def publish_one(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    orjson.loads(await request.read())
    receipt = {"id": f"1:{name}", "channel": name, "subscribers": 0}
    return web.Response(status=202, body=orjson.dumps(receipt), headers=_JSON)


async def publish_batch(request: web.Request) -> web.Response:
    items = orjson.loads(await request.read())
    receipts = [{"id": f"1:{it['channel']}", "channel": it["channel"]} for it in items]
    return web.Response(status=202, body=orjson.dumps({"events": receipts}), headers=_JSON)


def create_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_post(r"/channels/{name:.+}/events", publish_one)
    app.router.add_post("/publish", publish_batch)
    return app


def loop_factory() -> tuple[Callable[[], asyncio.AbstractEventLoop] | None, str]:
    """The hub's choice (``hub.server.loop_factory``), repeated here so the baseline needs
    no hub on its path."""
    try:
        import uvloop
    except ImportError:
        return None, "asyncio"
    if os.environ.get("SSEHUB_AIOFASTNET", "").strip().lower() not in ("1", "true", "yes", "on"):
        return uvloop.new_event_loop, "uvloop"
    try:
        import aiofastnet
    except ImportError:
        return uvloop.new_event_loop, "uvloop"
    return aiofastnet.loop_factory(uvloop.new_event_loop), "uvloop+aiofastnet"


async def serve(host: str, port: int) -> None:
    runner = web.AppRunner(create_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=BACKLOG).start()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    factory, name = loop_factory()
    print(f"bare aiohttp on {args.host}:{args.port}, loop: {name}", file=sys.stderr, flush=True)
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
