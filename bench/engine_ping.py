"""The floor of a worker's round trip to its engine: a request that does nothing, answered.

    python -m bench.engine_ping                 # CPU and switches per round trip, per process
    python -m bench.engine_ping --callgrind     # + instructions (valgrind), ~1 min

With ``workers`` > 1 and the memory backplane, every publish is a request to the engine and its
answer (``hub.backplane.engine_server``). This measures what that costs when the request does
nothing: the hub's own engine (``EngineServer``, its ``Frames``, ``handle`` and ``flush``) with
one method added, ``ping``, which returns None, and one worker's link (``EngineLink``) awaiting
``-n`` pings one after the other, as a publish handler awaits its answer, both processes on
uvloop and pinned to the same core (as ``bench.workers``'s price is). What a publish of a hub of
two workers costs beyond one process, less this, is the hub's own work; this is the design's.

- CPU user and system, and voluntary and involuntary context switches, from ``/proc``;
- ``--callgrind``: instructions executed per round trip in each process (counters zeroed after
  the warm-up, dumped after the window), the figure other processes' load does not move;
- ``--idle``: the worker's loop awaiting ``asyncio.sleep(0)`` instead (one loop pass, no
  engine), to subtract from the worker's figures what its own loop costs per pass.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/engine_ping.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.servers import PYTHON, REPO
from bench.workers_cost import _proc

__all__ = ["main"]


async def _serve(path: str) -> None:
    from hub.backplane.engine_server import EngineServer
    from hub.config import Config

    engine = EngineServer(Config(), path)
    engine._methods["ping"] = lambda: None  # the request that does nothing
    await engine.start()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await engine.close()


async def _client(path: str, n: int, warm: int, idle: bool) -> None:
    from hub.backplane.engine_link import EngineLink
    from hub.backplane.engine_wire import socket_path

    loop = asyncio.get_running_loop()
    _, link = await loop.create_unix_connection(
        lambda: EngineLink(lambda message: None, lambda: None), socket_path(path)
    )

    async def rounds(count: int) -> None:
        for _ in range(count):
            if idle:
                await asyncio.sleep(0)
            else:
                await link.call("ping")

    await rounds(warm)
    print("ready", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    await rounds(n)
    print("done", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    link.close()


def _run(coroutine: Any) -> None:
    from hub.server import loop_factory

    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(coroutine)


def _spawn(role: list[str], args: argparse.Namespace, out: Path) -> subprocess.Popen[str]:
    command = [PYTHON, "-m", "bench.engine_ping", *role]
    if args.callgrind:
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/cg.%p", *command]
    env = dict(os.environ, PYTHONPATH=str(Path(args.root).resolve()) + os.pathsep + str(REPO))
    return subprocess.Popen(
        ["taskset", "-c", str(args.core), *command],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=REPO,
    )


def _pid_of(proc: subprocess.Popen[str]) -> int:
    """The Python process itself (taskset execs it; valgrind runs it in its own process)."""
    return proc.pid


def measure(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    path = str(out / "engine.sock")
    engine = _spawn(["--serve", path], args, out)
    assert engine.stdout is not None and engine.stdin is not None
    engine.stdout.readline()
    role = ["--client", path, "-n", str(args.n), "--warm", str(args.warm)]
    client = _spawn([*role, *(["--idle"] if args.idle else [])], args, out)
    assert client.stdout is not None and client.stdin is not None
    try:
        client.stdout.readline()
        pids = {"engine": _pid_of(engine), "worker": _pid_of(client)}
        if args.callgrind:
            for pid in pids.values():
                subprocess.run(["callgrind_control", "-z", str(pid)], capture_output=True)
        before = {name: _proc(pid) for name, pid in pids.items()}
        started = time.monotonic()
        client.stdin.write("go\n")
        client.stdin.flush()
        client.stdout.readline()
        wall = time.monotonic() - started
        after = {name: _proc(pid) for name, pid in pids.items()}
        if args.callgrind:
            for pid in pids.values():
                subprocess.run(["callgrind_control", "-d", str(pid)], capture_output=True)
    finally:
        for proc in (client, engine):
            assert proc.stdin is not None
            proc.stdin.write("end\n")
            proc.stdin.flush()
            proc.wait(120)
    per: dict[str, Any] = {"wall_us": round(wall * 1e6 / args.n, 2)}
    for name, pid in pids.items():
        one = {
            key: round(
                (after[name][key] - before[name][key])
                * (1e6 if key in ("user", "sys") else 1)
                / args.n,
                2,
            )
            for key in after[name]
        }
        if args.callgrind and (dump := out / f"cg.{pid}.1").exists():
            total = re.search(r"^summary: (\d+)", dump.read_text(), re.M)
            one["instructions"] = round(int(total[1]) / args.n) if total else None
        per[name] = one
    return per


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.engine_ping")
    parser.add_argument("-n", type=int, default=20000, help="round trips measured")
    parser.add_argument("--warm", type=int, default=500)
    parser.add_argument("--callgrind", action="store_true")
    parser.add_argument("--idle", action="store_true", help="no engine: one loop pass a round")
    parser.add_argument("--root", default=str(REPO), help="the checkout whose hub runs (A/B)")
    parser.add_argument("--core", type=int, default=0, help="both processes' core")
    parser.add_argument("--keep", default="", help="keep the callgrind dumps here")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        _run(_serve(args.serve))
        return 0
    if args.client:
        _run(_client(args.client, args.n, args.warm, args.idle))
        return 0
    if args.callgrind:
        args.n = min(args.n, 2000)
    with tempfile.TemporaryDirectory(prefix="ssehub-engine-ping-") as tmp:
        out = Path(args.keep) if args.keep else Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        print(json.dumps({"round_trips": args.n, "idle": args.idle, **measure(args, out)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
