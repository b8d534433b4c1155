"""Filters' cost: hub CPU per delivery with subscribers under distinct filters against the same
number without, measured in the same run on one hub this script starts on 127.0.0.1.

    .venv/bin/python -m bench.filters                      # 1,000 subscribers, 3 rounds
    .venv/bin/python -m bench.filters --subscribers 2000 --events 600 --repeat 5

Each round runs four cases one after the other on the same hub, each with its own channel:

- ``plain``: N subscribers without a filter on one channel; every event goes to all N;
- ``10 filters, all pass``: N subscribers under 10 distinct filters (N/10 each: ``event=``,
  ``tag=`` all-of and any-of, and mixes) that every event passes: the same deliveries per event
  as ``plain``, so the ratio is what filtering itself costs (10 tests per event, 10 groups);
- ``10 filters, 1 in 10``: N subscribers under 10 filters of which each event passes one (its
  type is one of 10): N/10 deliveries per event;
- ``10 channels``: N subscribers without a filter, N/10 on each of 10 channels, one event to
  one channel: N/10 deliveries per event too, the baseline of the case before (a per-event cost,
  the publish request and the store, is spread over N/10 deliveries in both).

Events are published one per request (so a subscriber's write carries one frame in every case)
at ``--rate`` a second. The figure is the hub's CPU (utime + stime from /proc) over the round's
deliveries, counted by the subscribers (an ``id:`` line each). The hub is pinned to core 0 and
this client to core 1 on a machine with two cores. Printed: each case's µs per delivery, median
[min-max] of the rounds, and the ratios of each round's figures (same run), median [min-max].
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.stream_publish import _cpu_seconds, _free_port, _wait_ready

ROOT = Path(__file__).resolve().parent.parent
#: ten distinct filters, each passed by an event of type ``price`` tagged ``TAGS``
ALL_PASS = [
    "event=price",
    "tag=region:eu",
    "tag=tier:gold",
    "tag=region:eu&tag=tier:gold",
    "tag=tier:gold|silver",
    "event=price&tag=region:eu",
    "event=price&event=news",
    "tag=region:eu|us&tag=tier:gold",
    "event=price&tag=tier:gold|bronze",
    "tag=desk:fx",
]
TAGS = {"region": "eu", "tier": "gold", "desk": "fx"}


class Counter(asyncio.Protocol):
    """A subscriber that only counts the frames with an id it receives."""

    def __init__(self, request: bytes, counts: list[int]) -> None:
        self._request = request
        self._counts = counts
        self._tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        joined = self._tail + data
        self._counts[0] += joined.count(b"\nid: ") + joined.startswith(b"id: ")
        self._tail = joined[-4:]  # an "\nid: " split across two reads is counted once


async def _subscribe(port: int, paths: list[str], counts: list[int]) -> list[asyncio.Transport]:
    loop = asyncio.get_running_loop()
    transports = []
    for path in paths:
        request = f"GET {path} HTTP/1.1\r\nHost: hub\r\nAccept: text/event-stream\r\n\r\n"
        transport, _ = await loop.create_connection(
            functools.partial(Counter, request.encode(), counts), "127.0.0.1", port
        )
        transports.append(transport)
    await asyncio.sleep(1.0)  # every stream registered and live
    return transports


async def _case(
    port: int, pid: int, paths: list[str], bodies: list[tuple[str, bytes]], rate: float
) -> float:
    """µs of hub CPU per delivery while ``bodies`` are published to ``paths``' subscribers."""
    counts = [0]
    transports = await _subscribe(port, paths, counts)
    url = f"http://127.0.0.1:{port}"
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession() as session:
        counts[0] = 0
        cpu = _cpu_seconds(pid)
        started = time.perf_counter()
        for n, (channel, body) in enumerate(bodies):
            async with session.post(
                f"{url}/channels/{channel}/events", data=body, headers=headers
            ) as response:
                assert response.status == 202, await response.text()
            delay = started + (n + 1) / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        await asyncio.sleep(1.0)  # the last deliveries read
        used = _cpu_seconds(pid) - cpu
    for transport in transports:
        transport.close()
    await asyncio.sleep(0.5)
    return used / max(counts[0], 1) * 1e6


def _body(event: str, tags: dict[str, str]) -> bytes:
    return orjson.dumps({"event": event, "data": {"price": 101.25, "ok": True}, "tags": tags})


async def _round(args: argparse.Namespace, port: int, pid: int, n: int) -> dict[str, float]:
    subs, events = args.subscribers, args.events
    tenth = subs // 10
    plain_paths = [f"/channels/plain{n}/events"] * subs
    plain = [(f"plain{n}", _body("price", TAGS))] * events
    all_paths = [f"/channels/all{n}/events?{ALL_PASS[i // tenth]}" for i in range(subs)]
    all_bodies = [(f"all{n}", _body("price", TAGS))] * events
    # 1 in 10: type k{i}; ten times the events, so that the deliveries are as many
    one_paths = [f"/channels/one{n}/events?event=k{i // tenth}" for i in range(subs)]
    one = [(f"one{n}", _body(f"k{i % 10}", TAGS)) for i in range(events * 10)]
    chan_paths = [f"/channels/ch{n}-{i // tenth}/events" for i in range(subs)]
    chans = [(f"ch{n}-{i % 10}", _body("price", TAGS)) for i in range(events * 10)]
    rate = args.rate
    return {
        "plain": await _case(port, pid, plain_paths, plain, rate),
        "10 filters, all pass": await _case(port, pid, all_paths, all_bodies, rate),
        "10 channels": await _case(port, pid, chan_paths, chans, rate * 10),
        "10 filters, 1 in 10": await _case(port, pid, one_paths, one, rate * 10),
    }


def _start_hub(port: int, pin: bool) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "hub", "serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--config", str(ROOT / "config.toml")]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HUB_SUBSCRIBE_RATE": "0"}
    env |= {"HUB_MAX_CLIENT_STREAMS": "0", "HUB_MAX_CLIENT_CHANNELS": "0", "HUB_CLOCKS": ""}
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=(lambda: os.sched_setaffinity(0, {0})) if pin else None,
    )


def _spread(values: list[float], digits: int = 3) -> str:
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"{mid:.{digits}f} [{low:.{digits}f}-{high:.{digits}f}]"


async def _main(args: argparse.Namespace) -> None:
    pin = args.pin and (os.cpu_count() or 1) >= 2
    if pin:
        os.sched_setaffinity(0, {1})
    port = _free_port()
    hub = _start_hub(port, pin)
    rounds: list[dict[str, float]] = []
    try:
        await _wait_ready(f"http://127.0.0.1:{port}")
        for n in range(args.repeat):
            rounds.append(await _round(args, port, hub.pid, n))
    finally:
        hub.terminate()
        hub.wait(10)
    print(
        f"{args.subscribers} subscribers, {args.events} events a case ({args.rate:g}/s; x10 for "
        f"the 1-in-10 cases), {args.repeat} round(s), pinned: {pin}; median [min-max]"
    )
    print(f"{'case':24} {'hub CPU µs/delivery':>26}")
    for name in rounds[0]:
        print(f"{name:24} {_spread([r[name] for r in rounds]):>26}")
    ratios: dict[str, list[float]] = {
        "10 filters, all pass / plain": [r["10 filters, all pass"] / r["plain"] for r in rounds],
        "10 filters, 1 in 10 / 10 channels": [
            r["10 filters, 1 in 10"] / r["10 channels"] for r in rounds
        ],
        "10 filters, 1 in 10 / plain": [r["10 filters, 1 in 10"] / r["plain"] for r in rounds],
    }
    print(f"{'same-run ratio':38} {'median [min-max]':>20}")
    for name, values in ratios.items():
        print(f"{name:38} {_spread(values, 2):>20}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=1000, help="a multiple of 10")
    parser.add_argument("--events", type=int, default=300, help="per case (x10 for 1 in 10)")
    parser.add_argument("--rate", type=float, default=100.0, help="events a second")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-pin", dest="pin", action="store_false")
    args: Any = parser.parse_args(argv)
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
