"""Publishes on several keep-alive connections with Debian's ``wrk`` (C, epoll).

Why not our own publisher: at 8 connections the fast servers (nchan, uws, the floor)
answer a publish in a few µs of CPU, and a Python client spends more than that per
request, so it would measure itself. ``wrk`` with one thread costs a fraction of that.
It sends one fixed request over and over (a Lua script sets method, path and body):
enough for a throughput figure without subscribers, not for loss or latency.
Without ``wrk`` the bench falls back to ``loadclient.py publish --mode throughput
--connections N`` and the client's CPU says whether it was the limit.
"""

from __future__ import annotations

import asyncio
import re
import resource
import shutil
from pathlib import Path
from typing import Any

from bench.loadclient import Api

__all__ = ["WRK", "parse", "script", "wrk_publish"]

WRK = shutil.which("wrk")


def script(api: Api, channel: str) -> str:
    """A Lua script for one publish request in ``api``'s dialect."""
    if api == "nchan":
        path, body = f"/pub?id={channel}", '{"c":0,"s":0,"t":0}'
    else:
        path, body = f"/channels/{channel}/events", '{"event":"tick","data":{"c":0,"s":0,"t":0}}'
    return (
        'wrk.method = "POST"\n'
        f'wrk.path = "{path}"\n'
        f"wrk.body = [[{body}]]\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )


def parse(text: str) -> dict[str, Any]:
    """Requests, seconds, non-2xx answers and socket errors from wrk's report."""
    done = re.search(r"(\d+) requests in ([\d.]+)(m?s)", text)
    if done is None:
        raise RuntimeError(f"wrk printed no result:\n{text}")
    requests = int(done.group(1))
    seconds = float(done.group(2)) / (1000 if done.group(3) == "ms" else 1)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    return {
        "requests": requests,
        "elapsed_s": seconds,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(int(g) for g in errors.groups()) if errors else 0,
    }


async def wrk_publish(
    port: int, api: Api, channel: str, connections: int, seconds: float, workdir: Path, core: int
) -> dict[str, Any]:
    """Run wrk (one thread, pinned to ``core``) for ``seconds`` (whole seconds, at least
    one); its figures and its own CPU (from ``RUSAGE_CHILDREN``, read around its exit:
    no other child of ours exits meanwhile)."""
    assert WRK is not None
    lua = workdir / "publish.lua"
    lua.write_text(script(api, channel))
    cmd = [WRK, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "-s", str(lua)]
    cmd.append(f"http://127.0.0.1:{port}/")
    taskset = shutil.which("taskset")
    if taskset:
        cmd = [taskset, "-c", str(core), *cmd]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"wrk exited with {proc.returncode}:\n{text}")
    found = parse(text)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {**found, "cpu_s": round(cpu, 3), "cpu_pct": round(100 * cpu / found["elapsed_s"], 1)}
