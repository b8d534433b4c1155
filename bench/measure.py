"""What ``bench.run`` and ``bench.scaleout`` both measure with.

The machine's CPU (to tell a quiet window from a noisy one), waiting for a quiet
machine and re-running a noisy window, the publisher subprocess (``loadclient.py
publish``) and the log line. The thresholds here are the ones the tables' flags
(``*``, ``~``) stand for.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.servers import PYTHON

__all__ = [
    "CLIENT_SATURATED",
    "NOISY_MACHINE",
    "Reading",
    "Span",
    "cli_flags",
    "log",
    "machine_cpu_seconds",
    "quietest",
    "run_publisher",
    "wait_quiet",
]

LOADCLIENT = Path(__file__).resolve().parent / "loadclient.py"
#: Above this share of one core the client, not the server, may set the figure.
CLIENT_SATURATED = 0.90
#: Other processes using more than this share of a core during a window: the
#: machine was not quiet (e.g. a test suite running), so the figures are suspect.
NOISY_MACHINE = 0.10
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def machine_cpu_seconds() -> float:
    """CPU time of every task on the machine (user + nice + system + steal).

    IRQ and softirq time are left out: loopback TCP work is accounted there and
    it is ours. What is left beyond the server, client and publisher is someone
    else's, and that someone shares our two cores.
    """
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, _irq, _softirq, steal = fields
    return (user + nice + system + steal) / CLK_TCK


@dataclass(frozen=True)
class Reading:
    """Counters read at one instant: the start or the end of a measured window."""

    wall: float
    cpu: tuple[float, ...]  # CPU seconds of each party measured by pid (servers, Redis)
    client: float  # CPU seconds of this process, the load client
    machine: float  # CPU seconds of every task on the machine
    delivered: int
    parts: tuple[int, ...] = ()  # deliveries per group of subscribers, where counted

    @classmethod
    def now(cls, cpu: Sequence[float], delivered: int, parts: Sequence[int] = ()) -> Reading:
        return cls(
            time.monotonic(),
            tuple(cpu),
            time.process_time(),
            machine_cpu_seconds(),
            delivered,
            tuple(parts),
        )


@dataclass(frozen=True)
class Span:
    """What happened between two readings, and how busy the rest of the machine was."""

    wall: float
    cpu: tuple[float, ...]
    client: float
    machine: float
    other: float  # CPU seconds of processes that are none of ours
    delivered: int
    parts: tuple[int, ...]

    @classmethod
    def between(cls, a: Reading, b: Reading, publisher_cpu_s: float = 0.0) -> Span:
        """``publisher_cpu_s``: the publisher's CPU in the window, as it reports it (it
        may exit before the window's last reading, so it is not read by pid)."""
        wall = max(b.wall - a.wall, 1e-9)
        cpu = tuple(y - x for x, y in zip(a.cpu, b.cpu, strict=True))
        client = b.client - a.client
        machine = b.machine - a.machine
        other = max(0.0, machine - sum(cpu) - client - publisher_cpu_s)
        parts = tuple(y - x for x, y in zip(a.parts, b.parts, strict=True))
        return cls(wall, cpu, client, machine, other, b.delivered - a.delivered, parts)

    def pct(self, cpu_s: float) -> float:
        """``cpu_s`` seconds of CPU as a % of one core over the window."""
        return round(100 * cpu_s / self.wall, 1)

    def saturated(self, cpu_s: float) -> bool:
        """Whether a client using ``cpu_s`` may have set the figure (CLIENT_SATURATED)."""
        return cpu_s / self.wall > CLIENT_SATURATED

    @property
    def noisy(self) -> bool:
        """Other processes used more than NOISY_MACHINE of a core: figures suspect."""
        return self.other / self.wall > NOISY_MACHINE


async def wait_quiet(limit_s: float) -> float:
    """Wait (at most ``limit_s``) until other processes use under NOISY_MACHINE of a
    core for a whole second; return the last share measured. Called between
    scenarios, when no server of ours runs and this process idles."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    busy = math.inf
    while True:
        before, ours = machine_cpu_seconds(), time.process_time()
        await asyncio.sleep(1.0)
        busy = machine_cpu_seconds() - before - (time.process_time() - ours)
        if busy < NOISY_MACHINE or loop.time() >= deadline:
            return busy
        log(f"  machine busy ({busy:.0%} of a core used by others), waiting")


async def quietest(
    attempt: Callable[[int], Awaitable[dict[str, Any]]],
    *,
    retries: int,
    wait_quiet_s: float,
    noise: Callable[[dict[str, Any]], float],
) -> dict[str, Any]:
    """Run ``attempt(n)`` (it returns an ``error`` result rather than raise); if other
    processes were busy during its window (``noisy``), wait for quiet and run it
    again, ``retries`` times at most, keeping the quietest attempt (``noise``: % of a
    core used by others). The attempts' noise is kept in ``noisy_attempts``."""
    attempts: list[dict[str, Any]] = []
    for n in range(1 + retries):
        if wait_quiet_s > 0:
            await wait_quiet(wait_quiet_s)
        result = await attempt(n)
        attempts.append(result)
        if not result.get("noisy"):
            break
        log(f"  other processes were busy ({noise(result):.0f}% of a core)")
    best = min(attempts, key=noise)
    if len(attempts) > 1:
        best["noisy_attempts"] = [round(noise(a), 1) for a in attempts]
    return best


def cli_flags(**options: object) -> list[str]:
    """``channel_prefix="x"`` → ``["--channel-prefix", "x"]``."""
    out: list[str] = []
    for name, value in options.items():
        out += ["--" + name.replace("_", "-"), str(value)]
    return out


async def run_publisher(
    workdir: Path,
    ports: Sequence[int],
    api: str,
    args: Sequence[str],
    on_measure_start: Callable[[], object],
    limit_s: float,
) -> dict[str, Any]:
    """Run ``loadclient.py publish`` in its own process, against one server or a
    cluster (several ``ports``); call back on its ``measure_start`` line; return its
    final ``done`` line."""
    err = (workdir / "publisher.log").open("ab")
    proc = await asyncio.create_subprocess_exec(
        *(PYTHON, str(LOADCLIENT), "publish"),
        *cli_flags(port=",".join(map(str, ports)), api=api),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=err,
    )
    assert proc.stdout is not None
    done: dict[str, Any] | None = None
    try:
        async with asyncio.timeout(limit_s):
            while line := await proc.stdout.readline():
                msg = json.loads(line)
                if msg.get("event") == "measure_start":
                    on_measure_start()
                elif msg.get("event") == "done":
                    done = msg
            await proc.wait()
    finally:
        err.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if done is None:
        raise RuntimeError(f"publisher gave no result (exit {proc.returncode})")
    return done
