"""Memory that comes back: ``python -m bench.memory [--quick]``.

One hub process (memory backplane). After a warm-up (a share of both loads below, so the
allocator's arenas and the hub's tables have reached their working size), it measures RSS:

1. **connect/disconnect cycles**: 100,000 streams (``--quick``: 20,000) opened on 5,000
   channels, each read until its ``retry:`` hint and closed (half with a FIN, half with a RST);
2. **channels that come and go**: 10,000 channels (quick: 2,000), one event published to each,
   with ``history_ttl = 1`` and ``max_channels = 2000``, so old channels expire and are swept
   while new ones arrive, as on a hub whose job channels never repeat.

It prints the RSS curve (after every tenth of each phase) and how far the end is from the
start, and exits 1 if RSS grew by more than ``--limit-mib`` (default 5) in a phase.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import struct
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

from bench.servers import SERVERS, Server, free_port

__all__ = ["main"]

HUB_SETTINGS = {
    "HUB_HISTORY_TTL": "1",
    "HUB_MAX_CHANNELS": "2000",
    "HUB_MAX_SUBSCRIBERS": "20000",
    "HUB_LOG_LEVEL": "warning",
}
CONCURRENCY = 64
_JSON = {"Content-Type": "application/json"}


async def _cycle(port: int, channel: str, reset: bool) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET /channels/{channel}/events HTTP/1.1\r\nHost: m\r\n\r\n".encode())
        data = b""
        while b"retry: " not in data:
            chunk = await reader.read(4096)
            if not chunk:
                raise RuntimeError(f"the hub closed the stream early: {data!r}")
            data += chunk
    finally:
        if reset:  # an abortive close: the hub sees a RST, not a FIN
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()
        await writer.wait_closed()


async def _cycles(port: int, start: int, count: int) -> None:
    queue = iter(range(start, start + count))

    async def worker() -> None:
        for i in queue:
            await _cycle(port, f"cycle-{i % 5000}", reset=i % 2 == 1)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


async def _channels(session: aiohttp.ClientSession, url: str, start: int, count: int) -> None:
    """One event each on ``count`` new channels, in batches of 50 (one request per batch)."""
    for first in range(start, start + count, 50):
        batch = [
            {"channel": f"churn-{i}", "data": {"i": i}}
            for i in range(first, min(first + 50, start + count))
        ]
        while True:
            async with session.post(
                f"{url}/publish", data=orjson.dumps(batch), headers=_JSON
            ) as response:
                if response.status == 202:
                    break
                if response.status != 503:  # 503: max_channels full until the next sweep
                    raise RuntimeError(f"publish: {response.status} {await response.text()}")
            await asyncio.sleep(0.2)


async def _settled_rss(server: Server) -> float:
    """RSS in MiB once the hub is idle again (closed connections reaped, sweeps done)."""
    await asyncio.sleep(1.5)
    return server.rss_kib() / 1024


async def _phase(name: str, server: Server, steps: int, step: object, total: int) -> float:
    start = await _settled_rss(server)
    curve = [start]
    began = time.monotonic()
    for k in range(steps):
        await step(k)  # type: ignore[operator]
        curve.append(await _settled_rss(server))
    grown = curve[-1] - start
    shown = " ".join(f"{value:.1f}" for value in curve)
    print(f"{name}: {total} in {time.monotonic() - began:.0f} s; RSS MiB {shown}")
    print(f"{name}: start {start:.1f} MiB, peak {max(curve):.1f}, end {curve[-1]:.1f} "
          f"({grown:+.1f} MiB)")  # fmt: skip
    return grown


async def run(args: argparse.Namespace) -> int:
    cycles = 20_000 if args.quick else 100_000
    channels = 2_000 if args.quick else 10_000
    workdir = Path(tempfile.mkdtemp(prefix="ssehub-memory-"))
    server = Server(SERVERS["hub"], free_port(), workdir, cores=None, env=HUB_SETTINGS)
    await server.start()
    url = f"http://127.0.0.1:{server.port}"
    try:
        async with aiohttp.ClientSession() as session:
            # warm-up: a fifth of each load
            await _cycles(server.port, 0, cycles // 5)
            await _channels(session, url, 0, 2000)
            await asyncio.sleep(1.5)
            await _channels(session, url, 2000, 2000)  # every first-generation channel swept
            print(f"warm-up: {cycles // 5} cycles and 4000 channels; RSS "
                  f"{server.rss_kib() / 1024:.1f} MiB")  # fmt: skip

            async def cycle_step(k: int) -> None:
                await _cycles(server.port, cycles + k * cycles // 10, cycles // 10)

            async def channel_step(k: int) -> None:
                await _channels(session, url, 10_000 + k * channels // 10, channels // 10)

            grown = [
                await _phase("connect/disconnect cycles", server, 10, cycle_step, cycles),
                await _phase("channels that come and go", server, 10, channel_step, channels),
            ]
            async with session.get(f"{url}/healthz") as response:
                health = await response.json()
            print(f"at the end: {health['subscribers']} subscribers, "
                  f"{health['backplane'].get('channels')} channels with history")  # fmt: skip
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    ok = all(g <= args.limit_mib for g in grown)
    print("memory:", "PASS" if ok else f"FAIL: RSS grew by more than {args.limit_mib} MiB")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.memory", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="a fifth of the load")
    parser.add_argument("--limit-mib", type=float, default=5.0)
    return asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
