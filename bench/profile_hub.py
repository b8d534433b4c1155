"""Server CPU per delivery of one rate scenario, A/B across checkouts and backplanes, repeated.

    python -m bench.profile_hub                                   # "many": 10k subs / 1k ch
    python -m bench.profile_hub --backplanes memory,redis,nats    # ÷ memory, same run
    python -m bench.profile_hub --roots /tmp/hub-base,.           # before ÷ after, same run
    python -m bench.profile_hub --py-spy /tmp/spy                 # + a py-spy profile per run
    python -m bench.profile_hub --stream                          # publish over /publish/stream

``bench.run``'s figure of one window on a busy 2-core machine moves by tens of percent, so this
runs the configurations *interleaved* (A B A B ...) on a fresh hub each, and prints every run,
the median and the spread. With ``--py-spy PREFIX`` (py-spy on PATH or ``--py-spy-bin``) each
hub is sampled during its measured window only and the hottest frames are printed (the raw
collapsed stacks stay in ``PREFIX-<run>.txt``). Redis keys are made under a fresh prefix and
deleted after each run.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/profile_hub.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis.asyncio as aioredis

from bench.loadclient import SubscriberPool, install_uvloop, raise_nofile_limit
from bench.measure import Reading, Span, cli_flags, log, run_publisher
from bench.nats_store import NatsStore
from bench.scaleout import command_stats, stats_delta
from bench.servers import REPO, Server, ServerSpec, free_port

__all__ = ["main"]

REDIS_URL = "redis://127.0.0.1:6379/0"


@dataclass(frozen=True)
class Config:
    root: Path
    backplane: str  # "memory", "redis" or "nats"

    @property
    def label(self) -> str:
        where = "." if self.root == REPO else self.root.name
        return f"{where}/{self.backplane}"


async def one_run(
    config: Config, args: argparse.Namespace, workdir: Path, spy_out: Path | None
) -> dict[str, Any]:
    prefix = f"ssehub-profile-{uuid.uuid4().hex[:8]}:"
    env = {"HUB_BACKPLANE": "memory"}
    if config.backplane == "redis":
        env = {"HUB_BACKPLANE": args.redis_url, "HUB_REDIS_PREFIX": prefix}
    if config.backplane == "nats":  # a stream of its own per run, on the run's nats-server
        tag = "profile_" + prefix.split("-")[-1].rstrip(":")
        env = {"HUB_BACKPLANE": args.nats_url, "HUB_NATS_STREAM": tag}
        env |= {"HUB_NATS_SUBJECT_PREFIX": f"{tag}.ch"}
    spec = ServerSpec("hub", "hub", baseline=False, root=config.root)
    server = Server(spec, free_port(), workdir, env=env)
    await server.start()
    pool = SubscriberPool("127.0.0.1", server.port)
    spy: subprocess.Popen[bytes] | None = None
    try:
        chans = args.channels
        specs = [(f"/channels/p-{i % chans}/events", (i % chans,)) for i in range(args.subs)]
        await pool.connect(specs, limit_s=max(60.0, len(specs) / 100))
        await asyncio.sleep(0.5)
        start: list[Reading] = []
        stats: list[asyncio.Task[dict[str, tuple[int, int]]]] = []
        redis = aioredis.Redis.from_url(args.redis_url) if config.backplane == "redis" else None

        def on_start() -> None:
            nonlocal spy
            start.append(Reading.now([server.cpu_seconds()], pool.delivered))
            if redis is not None:
                stats.append(asyncio.get_running_loop().create_task(command_stats(redis)))
            if spy_out is not None:
                spy = subprocess.Popen(
                    [args.py_spy_bin, "record", "--pid", str(server.pid), "--rate", "250",
                     "--duration", str(int(args.duration)), "--format", "raw",
                     "-o", str(spy_out), *(["--native"] if args.native else [])],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip

        flags = cli_flags(
            channel_prefix="p-", channels=chans, mode=args.mode, rate=args.rate, batch=args.batch,
            warmup=args.warmup, duration=args.duration,
        )  # fmt: skip
        done = await run_publisher(
            workdir, [server.port], "hub", flags, on_start, args.warmup + args.duration + 120
        )
        drained = await pool.drain(done["published"], 10.0)
        end = Reading.now([server.cpu_seconds()], pool.delivered)
        commands: dict[str, dict[str, int]] = {}
        if redis is not None:
            commands = stats_delta(await stats[0], await command_stats(redis))
            await redis.aclose()
        span = Span.between(start[0], end, done["measure_cpu_s"])
        report = pool.report(done["published"], args.subs)
        if spy is not None:
            spy.wait(30)
    finally:
        pool.close()
        server.stop()
        if config.backplane == "redis":
            client = aioredis.Redis.from_url(args.redis_url)
            keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
            if keys:
                await client.unlink(*keys)
            await client.aclose()
    (cpu,) = span.cpu
    events = done["measured_events"] or 1
    return {
        # Redis commands per published event (Redis-wide: other clients of it count too)
        "per_event": {name: round(c["calls"] / events, 2) for name, c in commands.items()},
        "us": 1e6 * cpu / span.delivered if span.delivered else float("nan"),
        "cpu_pct": span.pct(cpu),
        "other_pct": span.pct(span.other),
        "loss": report.loss,
        "drained": drained,
        "p99_ms": report.latency_ms["p99"],
    }


def hottest(path: Path, top: int) -> str:
    """Self and inclusive shares of py-spy's collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    within: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for frame in set(frames):
            within[frame] += n
    if not total:
        return "  (no samples)"
    lines = [f"  {total} samples; self:"]
    lines += [f"  {100 * n / total:5.1f}% {f}" for f, n in own.most_common(top)]
    lines.append("  inclusive:")
    lines += [f"  {100 * n / total:5.1f}% {f}" for f, n in within.most_common(top + 8)[7:]]
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> int:
    roots = args.roots
    configs = [Config(r, b) for r in roots for b in args.backplanes.split(",")]
    base = Path(tempfile.mkdtemp(prefix="ssehub-profile-"))
    nats = NatsStore(base / "nats") if any(c.backplane == "nats" for c in configs) else None
    if nats is not None:
        nats.start()
        args.nats_url = nats.url
    try:
        return await _measure(args, configs, base)
    finally:
        if nats is not None:
            nats.stop()
        shutil.rmtree(base, ignore_errors=True)


async def _measure(args: argparse.Namespace, configs: list[Config], base: Path) -> int:
    results: dict[Config, list[dict[str, Any]]] = {c: [] for c in configs}
    for n in range(args.repeat):
        for i, config in enumerate(configs):
            spy_out = Path(f"{args.py_spy}-{n}-{i}.txt") if args.py_spy else None
            got = await one_run(config, args, base / f"{n}-{i}", spy_out)
            results[config].append(got)
            log(
                f"{config.label} run {n}: {got['us']:.2f} us/delivery, hub {got['cpu_pct']}%, "
                f"others {got['other_pct']}%, loss {got['loss']}, p99 {got['p99_ms']} ms"
                + (f"; Redis commands per event {got['per_event']}" if got["per_event"] else "")
            )
            if spy_out is not None and spy_out.exists():
                print(f"{config.label} run {n} py-spy ({spy_out}):\n{hottest(spy_out, args.top)}")
    print(
        f"\n{args.subs} subs / {args.channels} ch, {args.rate:g} ev/s in batches of "
        f"{args.batch}{' (streamed)' if args.mode == 'rate-stream' else ''}, "
        f"{args.duration:g} s windows; hub CPU us per delivery:"
    )
    medians = {}
    for config, runs in results.items():
        figures = sorted(r["us"] for r in runs)
        medians[config] = statistics.median(figures)
        shown = " ".join(f"{f:.2f}" for f in figures)
        print(f"  {config.label:<28} median {medians[config]:6.2f}  runs {shown}")
    first = configs[0]
    for config in configs[1:]:
        print(f"  {config.label} / {first.label}: {medians[config] / medians[first]:.2f}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.profile_hub", description=__doc__.split("\n")[0]
    )
    p.add_argument("--roots", default=str(REPO), help="comma list of checkouts (this one)")
    p.add_argument(
        "--backplanes",
        default="memory",
        help="comma list of memory,redis,nats (nats: its own "
        "nats-server from the venv, JetStream on a file store in a temporary directory)",
    )
    p.add_argument("--subs", type=int, default=10000)
    p.add_argument("--channels", type=int, default=1000)
    p.add_argument("--rate", type=float, default=500.0, help="total ev/s (500)")
    p.add_argument("--batch", type=int, default=1, help="events per publish request (1)")
    p.add_argument(
        "--stream",
        dest="mode",
        action="store_const",
        const="rate-stream",
        default="rate",
        help="publish over one POST /publish/stream instead of a request per event",
    )
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--redis-url", default=REDIS_URL)
    p.add_argument("--py-spy", help="sample each hub's window with py-spy to PREFIX-<run>.txt")
    p.add_argument("--py-spy-bin", default=shutil.which("py-spy") or "py-spy")
    p.add_argument("--native", action="store_true", help="py-spy --native")
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args(argv)
    args.roots = [Path(root).resolve() for root in args.roots.split(",")]
    os.sched_setaffinity(0, {1})  # the load client on core 1, the hub on core 0 (bench.run's)
    install_uvloop()
    raise_nofile_limit()
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
