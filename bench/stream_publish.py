"""Publish throughput on one connection: ``POST /publish/stream`` against single publishes and
``POST /publish`` batches, in the same run, against a hub this script starts on 127.0.0.1.

    .venv/bin/python -m bench.stream_publish                    # memory backplane
    .venv/bin/python -m bench.stream_publish --events 500000 --repeat 3
    .venv/bin/python -m bench.stream_publish --backplane redis://127.0.0.1:6379/0

Prints, per way of publishing, events/s (wall clock, publisher start to last receipt read) and
the hub's CPU µs per event (utime + stime of the hub process from /proc, which the noise of a
busy machine moves much less than the wall clock). The hub runs pinned to core 0 and this
client to core 1 when the machine has two cores (``--no-pin`` to leave both free). Every event
is the same small JSON object on one of ``--channels`` channels, with no subscriber. The hub
runs with config.toml as shipped: no publish rate by default (the public profile would hold
this one publisher to ``publish_rate``; ``bench.limits`` shows both).

With a Redis backplane the hub writes under a random ``redis_prefix`` and this script deletes
those keys afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import orjson

CLK_TCK = os.sysconf("SC_CLK_TCK")
CHUNK = 64 * 1024


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def _event(i: int, channels: int) -> dict[str, Any]:
    return {"channel": f"bench{i % channels}", "event": "tick", "data": {"n": i, "ok": True}}


async def _single(session: aiohttp.ClientSession, url: str, n: int, channels: int) -> int:
    for i in range(n):
        body = orjson.dumps({"event": "tick", "data": {"n": i, "ok": True}})
        async with session.post(
            f"{url}/channels/bench{i % channels}/events",
            data=body,
            headers={"Content-Type": "application/json"},
        ) as response:
            assert response.status == 202, await response.text()
            await response.read()
    return n


async def _batches(
    session: aiohttp.ClientSession, url: str, n: int, channels: int, size: int
) -> int:
    for at in range(0, n, size):
        body = orjson.dumps([_event(i, channels) for i in range(at, min(n, at + size))])
        async with session.post(
            f"{url}/publish", data=body, headers={"Content-Type": "application/json"}
        ) as response:
            assert response.status == 202, await response.text()
            await response.read()
    return n


async def _stream(session: aiohttp.ClientSession, url: str, n: int, channels: int) -> int:
    body = b"".join(
        orjson.dumps(_event(i, channels), None, orjson.OPT_APPEND_NEWLINE) for i in range(n)
    )

    async def chunks() -> AsyncIterator[bytes]:
        for at in range(0, len(body), CHUNK):
            yield body[at : at + CHUNK]

    receipts = errors = 0
    async with session.post(
        f"{url}/publish/stream",
        data=chunks(),
        headers={"Content-Type": "application/x-ndjson"},
    ) as response:
        assert response.status == 200, await response.text()
        tail = b""
        async for chunk in response.content.iter_any():
            lines = (tail + chunk).split(b"\n")
            tail = lines.pop()
            receipts += len(lines)
            errors += sum(line.startswith(b'{"line"') for line in lines)
    assert receipts == n and not errors and not tail, (receipts, errors, tail[:200])
    return n


async def _measure(pid: int, run: Callable[[], Coroutine[Any, Any, int]]) -> tuple[float, float]:
    """events/s and hub CPU µs per event of one run."""
    cpu = _cpu_seconds(pid)
    started = time.perf_counter()
    events = await run()
    wall = time.perf_counter() - started
    return events / wall, (_cpu_seconds(pid) - cpu) / events * 1e6


def _start_hub(port: int, backplane: str, prefix: str, pin: bool) -> subprocess.Popen[bytes]:
    """The hub with config.toml as shipped (no publish limit by default); the backplane and
    its prefix as HUB_* settings."""
    root = Path(__file__).resolve().parent.parent
    command = [sys.executable, "-m", "hub", "serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--config", str(root / "config.toml")]

    def pin_to_core0() -> None:
        os.sched_setaffinity(0, {0})

    env = {**os.environ, "PYTHONPATH": str(root), "HUB_BACKPLANE": backplane}
    if (root / "hub/supervisor.py").exists():  # a per-core figure, whatever config.toml says
        env.setdefault("HUB_WORKERS", "1")
    env["HUB_REDIS_PREFIX"] = prefix
    return subprocess.Popen(
        command,
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=pin_to_core0 if pin else None,
    )


async def _wait_ready(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            try:
                async with session.get(f"{url}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)
    raise SystemExit("the hub did not start")


async def _main(args: argparse.Namespace) -> None:
    pin = args.pin and (os.cpu_count() or 1) >= 2
    if pin:
        os.sched_setaffinity(0, {1})
    port = _free_port()
    prefix = f"ssehub-bench:{uuid.uuid4().hex[:8]}:"
    hub = _start_hub(port, args.backplane, prefix, pin)
    url = f"http://127.0.0.1:{port}"
    ways: dict[str, Callable[[aiohttp.ClientSession], Coroutine[Any, Any, int]]] = {
        "POST /channels/{name}/events (one request each)": lambda s: _single(
            s, url, args.singles, args.channels
        ),
        f"POST /publish (batches of {args.batch})": lambda s: _batches(
            s, url, args.events, args.channels, args.batch
        ),
        "POST /publish/stream (one request)": lambda s: _stream(s, url, args.events, args.channels),
    }
    figures: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
    try:
        await _wait_ready(url)
        connector = aiohttp.TCPConnector(limit=1)  # one connection, kept alive
        async with aiohttp.ClientSession(connector=connector) as session:
            await _stream(session, url, 1000, args.channels)  # warm-up
            for _ in range(args.repeat):
                for name, way in ways.items():
                    run = functools.partial(way, session)
                    figures[name].append(await _measure(hub.pid, run))
    finally:
        hub.terminate()
        hub.wait(10)
        if args.backplane.startswith(("redis", "unix")):
            import redis.asyncio as redis

            client = redis.Redis.from_url(args.backplane)
            keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
            if keys:
                await client.delete(*keys)
            await client.aclose()
    print(
        f"backplane {args.backplane}, {args.events} events a run ({args.singles} for singles), "
        f"{args.repeat} run(s), pinned: {pin}; median [min-max] of the runs"
    )
    print(f"{'':50} {'events/s':>28} {'hub CPU µs/event':>24}")
    for name, runs in figures.items():
        rates = [rate for rate, _ in runs]
        cpus = [cpu for _, cpu in runs]
        rate = f"{statistics.median(rates):,.0f} [{min(rates):,.0f}-{max(rates):,.0f}]"
        cpu = f"{statistics.median(cpus):.2f} [{min(cpus):.2f}-{max(cpus):.2f}]"
        print(f"{name:50} {rate:>28} {cpu:>24}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backplane", default="memory")
    parser.add_argument("--events", type=int, default=300_000, help="per run, batches and stream")
    parser.add_argument("--singles", type=int, default=5_000, help="single publishes per run")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--channels", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-pin", dest="pin", action="store_false")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
