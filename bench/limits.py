"""The hub as shipped, and under the public profile: what one address and one token get.

    python -m bench.limits                        # config.toml as shipped, then --profile public
    python -m bench.limits --quick --check        # CI: fails unless the shipped config serves all
    python -m bench.limits --profiles default     # only the shipped config

Each scenario gets a fresh ``python -m hub serve --config config.toml`` (the repository's file
as shipped, nothing turned off; ``--profile public`` added for the public run; the backend's
token given as ``HUB_PUBLISH_TOKENS``, as a user gives theirs), on 127.0.0.1, stopped by its
pid. Every client is this process, i.e. one address, as a load test from one machine, an office
behind one NAT or a mobile carrier's shared address:

- flood: N streams opened at once; how many are live (the hub's own count) and how many were
  answered otherwise than 200 (an EventSource gives up for good on those: must be none);
- channels: 20 streams of 100 new channels each; how many streams are live;
- batches: 200 batches of 100 events with the token, 8 in flight; their statuses;
- wrk -c8: single publishes with the token for some seconds; requests/s and non-2xx answers;
- stream: ndjson events on one ``POST /publish/stream`` with the token; events/s.

``--check`` (exit 1 on failure): as shipped, every stream is live, every publish 202, no
non-2xx; under the public profile, the flood is turned away with 200 + retry: only, and the hub
logged it (docs/limits.md). Speed is reported, not checked: the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/limits.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp

from bench.loadclient import raise_nofile_limit
from bench.servers import PYTHON, REPO, free_port
from bench.stream_publish import _stream
from bench.wrk import WRK, parse

__all__ = ["main"]

TOKEN = "bench-limits-token-0123456789"
WRK_SCRIPT = """\
wrk.method = "POST"
wrk.path = "/channels/wrk/events"
wrk.body = '{"data":"x"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer TOKEN"
""".replace("TOKEN", TOKEN)


class Hub:
    """One hub process with the shipped config (and a profile), its log kept in a file."""

    def __init__(self, profile: str, workdir: Path) -> None:
        self.port = free_port()
        self.log = workdir / f"hub-{profile}-{self.port}.log"
        command = [PYTHON, "-m", "hub", "serve", "--config", str(REPO / "config.toml")]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--profile", profile]
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HUB_PUBLISH_TOKENS": TOKEN}
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=log)
        self.url = f"http://127.0.0.1:{self.port}"

    async def ready(self) -> None:
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                try:
                    async with session.get(f"{self.url}/healthz") as answer:
                        if answer.status == 200:
                            return
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
        raise SystemExit(f"the hub did not start:\n{self.log.read_text()}")

    async def health(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as session, session.get(f"{self.url}/healthz") as a:
            return dict(await a.json())

    async def settled(self, expect: int) -> dict[str, Any]:
        """/healthz once its subscriber count is ``expect`` or has stopped moving (2 s at
        most). With workers (the shipped config) the count is the whole hub's, summed by the
        engine from counts each worker sends a few ms after a change: read at once, it can
        miss the streams just opened on the other worker."""
        found = await self.health()
        deadline = time.monotonic() + 2.0
        while found["subscribers"] != expect and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            before, found = found, await self.health()
            if found["subscribers"] == before["subscribers"] and time.monotonic() > deadline - 1.5:
                break
        return found

    def stop(self) -> str:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.log.read_text()


async def flood(hub: Hub, count: int) -> dict[str, Any]:
    """``count`` streams at once from this one address."""

    async def one() -> tuple[int, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", hub.port)
        writer.write(b"GET /channels/flood/events HTTP/1.1\r\nHost: hub\r\n\r\n")
        head = await reader.readuntil(b"retry: ")
        return int(head.split(b" ", 2)[1]), writer

    started = time.perf_counter()
    opened = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
    took = time.perf_counter() - started
    live = (await hub.settled(count))["subscribers"]
    statuses = [o[0] for o in opened if isinstance(o, tuple)]
    for o in opened:
        if isinstance(o, tuple):
            o[1].close()
    failed = sum(isinstance(o, BaseException) for o in opened)
    return {"streams": count, "live": live, "not_200": len(statuses) - statuses.count(200),
            "failed": failed, "seconds": round(took, 2)}  # fmt: skip


async def channels(hub: Hub) -> dict[str, Any]:
    """20 streams x 100 new channels from this one address."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        responses = []
        for s in range(20):
            names = "&".join(f"channel=s{s}-c{c}" for c in range(100))
            response = await session.get(f"{hub.url}/events?{names}")
            await response.content.readuntil(b"retry: ")
            responses.append(response)
        health = await hub.settled(20)
        for response in responses:
            response.close()
    return {"streams": 20, "live": health["subscribers"], "channels": health["channels"]}


async def batches(hub: Hub, count: int = 200) -> dict[str, Any]:
    """``count`` batches of 100 with the token, 8 in flight, as fast as they go."""
    statuses: dict[int, int] = {}
    body = [{"channel": f"b{n % 10}", "data": n} for n in range(100)]
    headers = {"Authorization": f"Bearer {TOKEN}"}
    connector = aiohttp.TCPConnector(limit=8)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def post() -> None:
            async with session.post(f"{hub.url}/publish", json=body) as answer:
                statuses[answer.status] = statuses.get(answer.status, 0) + 1

        await asyncio.gather(*(post() for _ in range(count)))
    return {"batches": count, **{str(k): v for k, v in sorted(statuses.items())}}


async def singles(hub: Hub, seconds: float, workdir: Path) -> dict[str, Any]:
    """wrk -t1 -c8 on single publishes with the token."""
    if WRK is None:
        return {"skipped": "wrk not installed (apt-get install wrk)"}
    script = workdir / "publish.lua"
    script.write_text(WRK_SCRIPT)
    command = [WRK, "-t1", "-c8", f"-d{max(1, round(seconds))}s", "-s", str(script), hub.url]
    process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
    out, _ = await process.communicate()
    found = parse(out.decode())
    rate = found["requests"] / found["elapsed_s"]
    return {"requests": found["requests"], "per_s": round(rate), "non_2xx": found["non_2xx"]}


async def stream(hub: Hub, events: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        started = time.perf_counter()
        await _stream(session, hub.url, events, 10)
        took = time.perf_counter() - started
    return {"events": events, "per_s": round(events / took)}


async def run_profile(profile: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    found: dict[str, Any] = {}
    scenarios: dict[str, Callable[[Hub], Awaitable[dict[str, Any]]]] = {
        "flood": lambda hub: flood(hub, args.streams),
        "channels": channels,
        "batches": batches,
        "wrk_c8": lambda hub: singles(hub, args.seconds, workdir),
        "stream": lambda hub: stream(hub, args.events if profile == "default" else args.rated),
    }
    logs = ""
    for name, scenario in scenarios.items():
        hub = Hub(profile, workdir)
        try:
            await hub.ready()
            found[name] = await scenario(hub)
        finally:
            logs += hub.stop()
        print(f"  {profile:8} {name:9} {json.dumps(found[name])}", file=sys.stderr)
    found["refusal_lines"] = sum("turned away" in line for line in logs.splitlines())
    found["tracebacks"] = logs.count("Traceback")
    return found


def problems(profile: str, found: dict[str, Any], args: argparse.Namespace) -> list[str]:
    bad = []
    if found["tracebacks"]:
        bad.append(f"{profile}: the hub logged a traceback")
    if found["flood"]["not_200"] or found["flood"]["failed"]:
        bad.append(f"{profile}: a stream was answered otherwise than 200: {found['flood']}")
    if profile == "default":
        if found["flood"]["live"] != args.streams:
            bad.append(f"as shipped, {found['flood']['live']} of {args.streams} streams live")
        if found["channels"]["live"] != 20:
            bad.append(f"as shipped, {found['channels']['live']} of 20 streams of 100 channels")
        if found["batches"].get("202") != found["batches"]["batches"]:
            bad.append(f"as shipped, batches: {found['batches']}")
        if found["wrk_c8"].get("non_2xx"):
            bad.append(f"as shipped, wrk -c8: {found['wrk_c8']['non_2xx']} non-2xx")
        if found["refusal_lines"]:
            bad.append("as shipped, the hub turned something away")
    else:
        if found["flood"]["live"] >= args.streams:
            bad.append("public profile: the flood was not turned away")
        if not found["refusal_lines"]:
            bad.append("public profile: nothing was logged about the refusals")
    return bad


def table(results: dict[str, dict[str, Any]], command: str) -> str:
    rows = [
        ("streams at once from one address: live", lambda f: f"{f['flood']['live']:,} of "
         f"{f['flood']['streams']:,} (non-200: {f['flood']['not_200']})"),
        ("20 streams x 100 new channels: live streams", lambda f: f"{f['channels']['live']} of 20"),
        ("200 batches of 100 with a token: statuses", lambda f: ", ".join(
            f"{v} x {k}" for k, v in f["batches"].items() if k != "batches")),
        ("wrk -c8 single publishes: req/s, non-2xx", lambda f: f"{f['wrk_c8'].get('per_s', '-'):,}"
         f", {f['wrk_c8'].get('non_2xx', '-'):,}"),
        ("/publish/stream, one connection: events/s", lambda f: f"{f['stream']['per_s']:,} "
         f"({f['stream']['events']:,} events)"),
        ("refusal lines logged", lambda f: str(f["refusal_lines"])),
    ]  # fmt: skip
    profiles = list(results)
    out = [f"`{command}`", "", "| | " + " | ".join(profiles) + " |", "|---" * (len(profiles) + 1)]
    out[-1] += "|"
    for label, cell in rows:
        out.append(f"| {label} | " + " | ".join(cell(results[p]) for p in profiles) + " |")
    return "\n".join(out)


async def _main(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    raise_nofile_limit()
    workdir = Path(tempfile.mkdtemp(prefix="ssehub-limits-"))
    results: dict[str, dict[str, Any]] = {}
    try:
        for profile in args.profiles.split(","):
            results[profile] = await run_profile(profile, args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> int:
    """Print the table (and the JSON file); the exit status of --check."""
    print(table(results, "python -m bench." + " ".join(["limits", *sys.argv[1:]])))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    bad = [p for profile, found in results.items() for p in problems(profile, found, args)]
    for problem in bad:
        print(f"FAIL: {problem}", file=sys.stderr)
    return 1 if bad and args.check else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.limits", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--profiles", default="default,public", help="comma list (default,public)")
    parser.add_argument("--streams", type=int, default=5000, help="flood size (5000)")
    parser.add_argument("--seconds", type=float, default=10, help="wrk duration (10; quick 3)")
    parser.add_argument("--events", type=int, default=300_000, help="stream events (300000)")
    parser.add_argument(
        "--rated", type=int, default=10_000, help="stream events under the public profile (10000)"
    )
    parser.add_argument("--quick", action="store_true", help="shorter wrk and stream, for CI")
    parser.add_argument("--check", action="store_true", help="exit 1 on a failed expectation")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.events, args.rated = 3, 50_000, 4_000
    return report(asyncio.run(_main(args)), args)


if __name__ == "__main__":
    sys.exit(main())
