"""Scale-out figures: 1 and 2 hub processes sharing one Redis, against the memory backplane.

    python -m bench.scaleout                  # full run, ~7 min on a quiet machine
    python -m bench.scaleout --quick          # smoke run, ~30 s
    python -m bench.scaleout --json out.json  # also write every figure as JSON
    python -m bench.scaleout --from-json out.json --markdown   # re-print the report

Three configurations get the SAME subscribers and the SAME publish load:

- ``memory-1``: one hub process, memory backplane (the reference);
- ``redis-1``: one hub process joined to a cluster through Redis;
- ``redis-2``: two hub processes on different ports, same Redis.

Subscriber ``i`` listens to channel ``i mod C`` on process ``(i div C) mod P``, so every
channel has the same number of subscribers on each process and every process reads every
channel from Redis (what a load balancer that knows nothing of channels gives). The publisher
(its own process) posts channel ``c`` to process ``c mod P`` over one keep-alive connection per
process: each channel's events reach the cluster in publish order, so loss, duplicates and
reordering can be counted exactly, and the publishing work is split like the subscribers.

Two measurements:

1. **latency** at a moderate load (single publishes): publish→receive p50/p99 of each
   configuration; Redis minus memory is what the backplane adds;
2. **saturation**: a ladder of rising publish rates, a fresh cluster per step. ``redis-1``
   climbs until it cannot keep up (its first failing rate is "the saturating load"); every
   configuration climbs at least that far, and stops after two failing steps in a row.
   Delivered events per second during each measured window, server CPU per process, the load
   client's, the publisher's and Redis's CPU (``/proc``) tell who ran out of CPU.

Why a 2-core machine bounds the ratio: with two hub processes each pinned to a core, the load
client, the publisher and Redis have no core of their own; whatever they use comes out of the
hubs' share. The report prints that caveat with the CPU figures that size it, and a projection
from the hubs' own cost per delivered event (what a core per process would give).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

if __package__ in (None, ""):  # `python bench/scaleout.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from bench import cli
from bench.loadclient import SubscriberPool, install_uvloop, raise_nofile_limit
from bench.measure import (
    Reading,
    Span,
    cli_flags,
    log,
    quietest,
    run_publisher,
)
from bench.nats_store import NatsStore
from bench.report import LEGEND, flags, num, table
from bench.servers import SERVERS, Server, cpu_seconds, free_port

__all__ = ["CONFIGS", "Layout", "Plan", "main"]

Backplane = Literal["memory", "redis", "nats"]
Pinning = Literal["hubs", "none"]


@dataclass(frozen=True)
class Layout:
    """One configuration under test: which backplane, how many hub processes."""

    name: str
    backplane: Backplane
    processes: int


CONFIGS = (
    Layout("memory-1", "memory", 1),
    Layout("redis-1", "redis", 1),
    Layout("redis-2", "redis", 2),
    Layout("nats-1", "nats", 1),
    Layout("nats-2", "nats", 2),
)
#: The pair whose ratio is the headline, and the pair whose latency difference is.
ONE, TWO, MEMORY = "redis-1", "redis-2", "memory-1"
#: Subscribes in flight at once. redis-py 8's asyncio pool holds at most 100 connections and
#: raises MaxConnectionsError beyond (it does not wait); the hub takes that for "Redis is
#: down" and answers subscribers "retry later". The load client counts such answers as
#: refused (never as connected), and a step with any fails.
CONNECT_CONCURRENCY = 50


@dataclass
class Plan:
    """Sizes, rates and durations (all settable by flag)."""

    subs: int = 400
    channels: int = 20
    latency_rate: float = 200.0  # ev/s, single publishes: the moderate load
    rates: tuple[float, ...] = (500, 1000, 1500, 2000, 2500, 3000, 4000, 6000, 8000)
    batch: int = 1  # events per publish interval (split by channel over the processes)
    connections: int = 4  # publisher's keep-alive connections per hub process
    warmup: float = 2.0
    duration: float = 10.0
    #: A step is kept up when deliveries reach this share of what was published, the
    #: publisher kept its schedule, nothing was lost and p99 stayed under the limit.
    keep_up: float = 0.97
    p99_limit_ms: float = 250.0
    #: The hub's history_size; None: config.toml's as shipped (that of bench.run). It sets
    #: how far behind a reader may fall before entries are trimmed unread, and the cost of
    #: each publish in Redis (see the README's scale-out section).
    history_size: int | None = None
    pin: Pinning = "hubs"
    #: Extra environment for the hub processes, "NAME=value" each (e.g. another HUB_* setting).
    hub_env: tuple[str, ...] = ()
    redis_url: str = "redis://127.0.0.1:6379/0"
    wait_quiet: float = 0.0
    retries: int = 0

    @classmethod
    def quick(cls) -> Plan:
        """Small sizes, two steps, short windows: a smoke run, not figures."""
        return cls(
            subs=200,
            channels=10,
            latency_rate=50.0,
            rates=(200, 800),
            connections=2,
            warmup=0.3,
            duration=1.5,
        )

    @property
    def fanout(self) -> float:
        """Subscribers per channel: deliveries per published event."""
        return self.subs / self.channels


# --------------------------------------------------------------------------- #
# A cluster of hub processes and what they cost
# --------------------------------------------------------------------------- #


def cores_for(plan: Plan, processes: int) -> list[list[int] | None]:
    """Process ``i`` gets core ``i`` (modulo the cores we may use), or no pinning."""
    if plan.pin == "none":
        return [None] * processes
    cores = sorted(os.sched_getaffinity(0))
    return [[cores[i % len(cores)]] for i in range(processes)]


def pinning_note(plan: Plan) -> str:
    if plan.pin == "none":
        return "nothing pinned (the kernel places every process)"
    cores = sorted(os.sched_getaffinity(0))
    return (
        f"hub process i pinned to core i (of {len(cores)}: {cores}); the load client, the "
        "publisher and Redis not pinned (the kernel places them)"
    )


class Cluster:
    """The hub processes of one configuration, started by us and stopped by pid."""

    def __init__(
        self, layout: Layout, plan: Plan, workdir: Path, prefix: str, nats_url: str = ""
    ) -> None:
        env = dict(item.split("=", 1) for item in plan.hub_env)
        env["HUB_BACKPLANE"] = "memory"
        if plan.history_size is not None:
            env["HUB_HISTORY_SIZE"] = str(plan.history_size)
        if layout.backplane == "redis":
            env |= {"HUB_BACKPLANE": plan.redis_url, "HUB_REDIS_PREFIX": prefix}
        if layout.backplane == "nats":  # a stream per step, on the run's own nats-server
            tag = "".join(c if c.isalnum() else "_" for c in prefix)
            env |= {"HUB_BACKPLANE": nats_url, "HUB_NATS_STREAM": tag}
            env |= {"HUB_NATS_SUBJECT_PREFIX": f"{tag}.ch"}
        self.servers = [
            Server(SERVERS["hub"], free_port(), workdir / f"hub{i}", cores=cores, env=env)
            for i, cores in enumerate(cores_for(plan, layout.processes))
        ]

    @property
    def ports(self) -> list[int]:
        return [server.port for server in self.servers]

    async def start(self) -> None:
        for server in self.servers:
            await server.start()

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


@dataclass
class Meter:
    """Reads the CPU of every party (hub processes, this client, Redis) and the
    deliveries, so a saturated client or Redis shows next to the hubs. (The publisher
    reports its own CPU: it may exit before the window's last reading.)"""

    cluster: Cluster
    pool: SubscriberPool
    bounds: list[int]  # pool.subs[bounds[i]:bounds[i + 1]] are on hub i
    redis_pid: int | None
    start: Reading | None = None
    end: Reading | None = None

    def read(self) -> Reading:
        subs = self.pool.subs
        per_hub = [sum(s.events for s in subs[a:b]) for a, b in pairwise(self.bounds)]
        hubs = [server.cpu_seconds() for server in self.cluster.servers]
        redis = cpu_seconds([self.redis_pid]) if self.redis_pid else 0.0
        return Reading.now([*hubs, redis], self.pool.delivered, per_hub)

    def take_start(self) -> None:
        if self.start is None:
            self.start = self.read()

    def take_end(self) -> None:
        if self.end is None:
            self.end = self.read()

    def figures(self, redis_used: bool, publisher: float) -> dict[str, Any]:
        """CPU shares (% of one core) and rates over the window; ``publisher``: the
        publisher's CPU seconds in its window."""
        a, b = self.start, self.end
        if a is None or b is None:
            raise RuntimeError("the measured window never started or ended")
        span = Span.between(a, b, publisher)
        *hubs, redis = span.cpu
        delivered = span.delivered
        return {
            "seconds": round(span.wall, 3),
            "delivered": delivered,
            "delivered_per_s": round(delivered / span.wall, 1),
            "per_hub_delivered_per_s": [round(n / span.wall, 1) for n in span.parts],
            "hub_cpu_pct": [span.pct(h) for h in hubs],
            "client_cpu_pct": span.pct(span.client),
            "publisher_cpu_pct": span.pct(publisher),
            "redis_cpu_pct": span.pct(redis) if redis_used and self.redis_pid else None,
            "machine_cpu_pct": span.pct(span.machine),
            "other_cpu_pct": span.pct(span.other),
            "hub_cpu_us_per_delivery": round(1e6 * sum(hubs) / delivered, 2) if delivered else None,
            "client_saturated": span.saturated(span.client),
            "publisher_saturated": span.saturated(publisher),
            "noisy": span.noisy,
        }


# --------------------------------------------------------------------------- #
# Redis: its pid (for its CPU), its command statistics, our keys
# --------------------------------------------------------------------------- #


async def redis_pid(client: aioredis.Redis) -> int | None:
    """The pid of the Redis server if it runs on this machine (so /proc has its CPU)."""
    info = await client.info("server")
    pid = info.get("process_id")
    return pid if isinstance(pid, int) and _is_redis(pid) else None


def _is_redis(pid: int) -> bool:
    try:
        comm = Path(f"/proc/{pid}/comm").read_text()
    except OSError:
        return False  # another machine, or another pid namespace
    return "redis" in comm


async def command_stats(client: aioredis.Redis) -> dict[str, tuple[int, int]]:
    """Calls and µs per command since Redis started (``INFO commandstats``)."""
    info = await client.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): (int(stats["calls"]), int(stats["usec"]))
        for name, stats in info.items()
        if isinstance(stats, dict)
    }


def stats_delta(
    before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]
) -> dict[str, dict[str, int]]:
    """Per command: calls and Redis CPU µs in between, busiest first. Other clients of the
    same Redis count too (the figures are for seeing where Redis spends its time)."""
    out = {}
    for name, (calls, usec) in after.items():
        calls0, usec0 = before.get(name, (0, 0))
        if calls > calls0:
            out[name] = {"calls": calls - calls0, "usec": usec - usec0}
    return dict(sorted(out.items(), key=lambda item: -item[1]["usec"]))


async def delete_prefix(client: aioredis.Redis, prefix: str) -> int:
    """Delete our keys (SCAN + UNLINK on our prefix only; never FLUSHDB: Redis is shared)."""
    deleted = 0
    batch: list[bytes] = []
    async for key in client.scan_iter(match=f"{prefix}*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            deleted += await client.unlink(*batch)
            batch = []
    if batch:
        deleted += await client.unlink(*batch)
    return deleted


# --------------------------------------------------------------------------- #
# One step: fresh cluster, subscribers, publisher, window, drain
# --------------------------------------------------------------------------- #


@dataclass
class Context:
    """What every step shares."""

    plan: Plan
    workdir: Path
    run_prefix: str  # Redis key prefix of this run; each step adds its own part
    redis: aioredis.Redis | None
    redis_pid: int | None
    nats: NatsStore | None = None
    steps: int = 0
    deleted_keys: int = 0


async def drain(
    pool: SubscriberPool, published: Sequence[int], *, stall_s: float = 5.0, limit_s: float = 90.0
) -> tuple[bool, float]:
    """Wait until every subscriber has every event, as long as deliveries progress: an
    overloaded hub delivers its backlog late, and late is not lost. Gives up after
    ``stall_s`` without progress or ``limit_s`` in all."""
    loop = asyncio.get_running_loop()
    start = last_progress = loop.time()
    last = pool.delivered
    while True:
        if await pool.drain(published, 0.5):
            return True, round(loop.time() - start, 2)
        now = loop.time()
        if pool.delivered != last:
            last, last_progress = pool.delivered, now
        elif now - last_progress > stall_s or now - start > limit_s:
            return False, round(now - start, 2)


async def step(
    ctx: Context, layout: Layout, *, phase: str, rate: float, batch: int
) -> dict[str, Any]:
    """Run one load on a fresh cluster of ``layout``; wait for a quiet machine first and
    re-run a noisy window (``plan.retries``), keeping the quietest attempt."""

    async def attempt(_: int) -> dict[str, Any]:
        try:
            return await _step_once(ctx, layout, phase=phase, rate=rate, batch=batch)
        except Exception as exc:  # one failed step must not end the run
            return {"config": layout.name, "phase": phase, "params": {"rate": rate},
                    "error": f"{type(exc).__name__}: {exc}"}  # fmt: skip

    return await quietest(
        attempt,
        retries=ctx.plan.retries,
        wait_quiet_s=ctx.plan.wait_quiet,
        noise=lambda r: float(r.get("other_cpu_pct") or 0.0),
    )


async def _step_once(
    ctx: Context, layout: Layout, *, phase: str, rate: float, batch: int
) -> dict[str, Any]:
    plan = ctx.plan
    ctx.steps += 1
    tag = f"{ctx.steps}-{layout.name}"
    prefix = f"{ctx.run_prefix}{ctx.steps}:"
    workdir = ctx.workdir / tag
    cluster = Cluster(layout, plan, workdir, prefix, ctx.nats.url if ctx.nats else "")
    # At most CONNECT_CONCURRENCY subscribes in flight: more trip the hub's Redis connection
    # pool (see CONNECT_CONCURRENCY); connecting is set-up here, not what is measured.
    pool = SubscriberPool("127.0.0.1", cluster.ports[0], concurrency=CONNECT_CONCURRENCY)
    params = {"rate": rate, "batch": batch, "subs": plan.subs, "channels": plan.channels}
    head: dict[str, Any] = {"config": layout.name, "processes": layout.processes, "phase": phase}
    timers: list[asyncio.TimerHandle] = []
    try:
        await cluster.start()
        channels = [f"so{ctx.steps}-{c}" for c in range(plan.channels)]
        bounds = [0]
        for p, port in enumerate(cluster.ports):
            specs = [
                (f"/channels/{channels[i % plan.channels]}/events", (i % plan.channels,))
                for i in range(plan.subs)
                if (i // plan.channels) % layout.processes == p
            ]
            await pool.connect(specs, limit_s=max(60.0, len(specs) / 100), port=port)
            bounds.append(len(pool.subs))
        if pool.connect_errors or len(pool.subs) < plan.subs:
            raise RuntimeError(f"{len(pool.subs)}/{plan.subs} connected: {pool.connect_errors}")
        await asyncio.sleep(0.3)  # let the hubs finish registering (and joining Redis reads)
        store_pid = ctx.nats.pid if ctx.nats and layout.backplane == "nats" else ctx.redis_pid
        meter = Meter(cluster, pool, bounds, store_pid)
        stats: list[asyncio.Task[dict[str, tuple[int, int]]]] = []
        loop = asyncio.get_running_loop()

        def on_measure_start() -> None:
            meter.take_start()
            timers.append(loop.call_later(plan.duration, on_measure_end))
            if ctx.redis is not None and layout.backplane == "redis":
                stats.append(loop.create_task(command_stats(ctx.redis)))

        def on_measure_end() -> None:
            if meter.end is not None:
                return
            meter.take_end()
            if ctx.redis is not None and stats:
                stats.append(loop.create_task(command_stats(ctx.redis)))

        done = await run_publisher(
            workdir,
            cluster.ports,
            "hub",
            cli_flags(
                channel_prefix=f"so{ctx.steps}-",
                channels=plan.channels,
                mode="rate",
                rate=rate,
                batch=batch,
                connections=plan.connections,
                warmup=plan.warmup,
                duration=plan.duration,
            ),
            on_measure_start,
            limit_s=plan.warmup + plan.duration + 120,
        )
        if meter.start is None:
            raise RuntimeError("the publisher never started its measured window")
        # The window is the publisher's: it ends `duration` after its start, even if the
        # publisher's answers came back sooner.
        await asyncio.sleep(max(0.0, meter.start.wall + plan.duration - time.monotonic()))
        on_measure_end()
        published = done["published"]
        drained, drain_s = await drain(pool, published)
        report = pool.report(published, plan.subs)
        figures = meter.figures(layout.backplane != "memory", done["measure_cpu_s"])
        commands = stats_delta(*[await t for t in stats]) if len(stats) == 2 else {}
        exits = [s.proc.poll() if s.proc else None for s in cluster.servers]
    finally:
        for timer in timers:
            timer.cancel()
        pool.close()
        cluster.stop()
        if ctx.redis is not None:
            try:
                ctx.deleted_keys += await delete_prefix(ctx.redis, prefix)
            except RedisError as problem:
                log(f"  could not delete keys {prefix}*: {problem}")
    loss = report.loss
    offered = done["achieved_rate"] * plan.fanout
    reasons = []
    if loss:
        reasons.append(f"lost {loss}")
    if report.closed_early:
        reasons.append(f"{report.closed_early} subscribers closed")
    if done["failed_requests"]:
        reasons.append(f"{done['failed_requests']} publishes failed")
    if done["achieved_rate"] < plan.keep_up * rate:
        reasons.append(f"publisher reached {done['achieved_rate']:g} ev/s")
    if figures["delivered_per_s"] < plan.keep_up * offered:
        reasons.append(f"delivered {figures['delivered_per_s'] / max(offered, 1e-9):.0%}")
    p99 = report.latency_ms["p99"]
    if p99 is None or p99 > plan.p99_limit_ms:
        reasons.append(f"p99 {p99} ms")
    return {
        **head,
        "params": params,
        "offered_deliveries_per_s": round(offered, 1),
        **figures,
        "kept_up": not reasons,
        "why_not": reasons,
        "loss": loss,
        "drained": drained,
        "drain_s": drain_s,
        "p50_ms": report.latency_ms["p50"],
        "p99_ms": p99,
        "max_ms": report.latency_ms["max"],
        "redis_commands": commands,
        "server_exit": exits,
        "pool": asdict(report),
        "publisher": done,
    }


# --------------------------------------------------------------------------- #
# The run
# --------------------------------------------------------------------------- #


@dataclass
class Results:
    """Every step, by phase; enough to re-print the report."""

    latency: dict[str, dict[str, Any]] = field(default_factory=dict)
    ladder: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    saturating_rate: float | None = None
    #: Where it ran: cores, pinning, Redis version (the report is re-printed from JSON).
    setup: dict[str, Any] = field(default_factory=dict)


async def run(plan: Plan, workdir: Path, configs: Sequence[Layout]) -> Results:
    results = Results()
    results.setup = {"cpus": os.cpu_count(), "pinning": pinning_note(plan)}
    redis: aioredis.Redis | None = None
    pid = None
    if any(layout.backplane == "redis" for layout in configs):
        redis = aioredis.Redis.from_url(plan.redis_url, socket_timeout=10)
        try:
            await redis.ping()
        except (RedisError, OSError) as problem:
            await redis.aclose()
            raise SystemExit(f"no Redis at {plan.redis_url}: {problem}") from None
        pid = await redis_pid(redis)
        version = (await redis.info("server")).get("redis_version")
        results.setup |= {"redis_version": version, "redis_pid": pid}
        log(f"Redis {version} at {plan.redis_url}: pid {pid if pid else 'not on this machine'}")
    ctx = Context(plan, workdir, f"ssehub-bench-{uuid.uuid4().hex[:10]}:", redis, pid)
    if any(layout.backplane == "nats" for layout in configs):
        ctx.nats = NatsStore(workdir / "nats")
        ctx.nats.start()
        results.setup |= {"nats_pid": ctx.nats.pid}
        log(f"nats-server (JetStream, file store) at {ctx.nats.url}: pid {ctx.nats.pid}")
    try:
        for layout in configs:
            log(f"latency: {layout.name} at {plan.latency_rate:g} ev/s, single publishes")
            results.latency[layout.name] = r = await step(
                ctx, layout, phase="latency", rate=plan.latency_rate, batch=1
            )
            _log_step(r)
        # redis-1 first: where it stops keeping up sets how far the others climb at least.
        order = sorted(configs, key=lambda layout: layout.name != ONE)
        for layout in order:
            results.ladder[layout.name] = trials = []
            failures = 0
            for rate in plan.rates:
                log(f"saturation: {layout.name} at {rate:g} ev/s, {_batching(plan.batch)}")
                r = await step(ctx, layout, phase="saturation", rate=rate, batch=plan.batch)
                trials.append(r)
                _log_step(r)
                if layout.name == ONE and not r["kept_up"] and results.saturating_rate is None:
                    results.saturating_rate = rate
                failures = 0 if r.get("kept_up") else failures + 1
                reached = results.saturating_rate is None or rate >= results.saturating_rate
                # One step past the first failure shows whether a saturated configuration
                # still delivers more when offered more (its capacity) or has levelled off.
                if "error" in r or (failures >= 2 and reached):
                    break
    finally:
        if ctx.nats is not None:
            ctx.nats.stop()
        if redis is not None:
            ctx.deleted_keys += await delete_prefix(redis, ctx.run_prefix)
            log(f"deleted {ctx.deleted_keys} Redis keys under {ctx.run_prefix}*")
            await redis.aclose()
    return results


def _log_step(r: dict[str, Any]) -> None:
    if "error" in r:
        log(f"  ERROR {r['error']}")
        return
    log(
        f"  delivered {r['delivered_per_s']:,.0f}/s of {r['offered_deliveries_per_s']:,.0f}/s; "
        f"p50 {r['p50_ms']} ms p99 {r['p99_ms']} ms; lost {r['loss']}; hub CPU "
        f"{'+'.join(f'{c:g}' for c in r['hub_cpu_pct'])}% client {r['client_cpu_pct']}% "
        f"publisher {r['publisher_cpu_pct']}% store {num(r['redis_cpu_pct'])}% "
        f"other {r['other_cpu_pct']}%" + ("" if r["kept_up"] else f"; NOT kept up: {r['why_not']}")
    )


# --------------------------------------------------------------------------- #
# Report
# --------------------------------------------------------------------------- #


def _cpu(r: dict[str, Any]) -> str:
    return " + ".join(f"{c:.0f}" for c in r["hub_cpu_pct"])


def best_kept_up(trials: list[dict[str, Any]]) -> dict[str, Any] | None:
    kept = [t for t in trials if t.get("kept_up")]
    return max(kept, key=lambda t: t["params"]["rate"]) if kept else None


def at_rate(trials: list[dict[str, Any]], rate: float | None) -> dict[str, Any] | None:
    found = [t for t in trials if rate is not None and t["params"]["rate"] == rate]
    return found[0] if found else None


def _batching(batch: int) -> str:
    return "one event per POST" if batch == 1 else f"{batch} events per publish interval"


def build_report(results: Results, plan: Plan, markdown: bool = False) -> str:
    lines: list[str] = []
    everyone = (MEMORY, ONE, TWO, "nats-1", "nats-2")
    names = [n for n in everyone if n in results.latency or n in results.ladder]
    lines += [
        f"Subscribers: {plan.subs} on {plan.channels} channels ({plan.fanout:g} per channel), "
        "each channel's subscribers split evenly over the processes.",
        f"Publisher: its own process, {plan.connections} keep-alive connection(s) per hub "
        "process; channel c is always posted to process c mod P, on one of its connections "
        "(so each channel's order is the publish order).",
        f"Pinning: {results.setup.get('pinning', '?')}.",
        "",
        f"Latency at a moderate load: {plan.latency_rate:g} ev/s, one event per POST "
        f"({plan.latency_rate * plan.fanout:,.0f} deliveries/s)",
        "",
    ]
    rows = [["config", "p50 ms", "p99 ms", "max ms", "lost", "hub CPU % (per process)",
             "client %", "store %"]]  # fmt: skip
    for name in names:
        r = results.latency.get(name)
        if r is None or "error" in r:
            rows.append([name, *(["error" if r else "n/a"] * 7)])
            continue
        rows.append([name + flags(r), num(r["p50_ms"], 2), num(r["p99_ms"], 2),
                     num(r["max_ms"], 1), num(r["loss"]), _cpu(r), num(r["client_cpu_pct"]),
                     num(r["redis_cpu_pct"])])  # fmt: skip
    lines += table(rows, markdown)
    mem, one = results.latency.get(MEMORY), results.latency.get(ONE)
    if mem and one and "error" not in mem and "error" not in one:
        lines += [
            "",
            "Added by Redis (redis-1 minus memory-1): "
            f"p50 {one['p50_ms'] - mem['p50_ms']:+.2f} ms, "
            f"p99 {one['p99_ms'] - mem['p99_ms']:+.2f} ms",
        ]
    nats_one = results.latency.get("nats-1")
    if mem and nats_one and "error" not in mem and "error" not in nats_one:
        lines += [
            "Added by NATS (nats-1 minus memory-1): "
            f"p50 {nats_one['p50_ms'] - mem['p50_ms']:+.2f} ms, "
            f"p99 {nats_one['p99_ms'] - mem['p99_ms']:+.2f} ms",
        ]
    lines += [
        "",
        f"Saturation: rising rates, {_batching(plan.batch)}, fresh processes per step; "
        f"delivered events/s (x = not kept up; {plan.duration:g} s windows)",
        "",
    ]
    rows = [["ev/s published", "deliveries offered/s", *names]]
    for rate in plan.rates:
        cells = [f"{rate:,.0f}", f"{rate * plan.fanout:,.0f}"]
        for name in names:
            t = at_rate(results.ladder.get(name, []), rate)
            if t is None:
                cells.append("")
            elif "error" in t:
                cells.append("error")
            else:
                cells.append(num(t["delivered_per_s"]) + ("" if t["kept_up"] else " x") + flags(t))
        if any(cells[2:]):
            rows.append(cells)
    lines += table(rows, markdown)

    sat = results.saturating_rate
    top = max(plan.rates)
    load = sat if sat is not None else top
    lines += [
        "",
        (
            f"At the saturating load ({load:,.0f} ev/s: the first step redis-1 did not keep "
            "up with)"
            if sat is not None
            else f"redis-1 kept up with every step; at the highest ({load:,.0f} ev/s)"
        ),
        "",
    ]
    rows = [["config", "delivered/s", "hub CPU % (per process)", "hub CPU us/delivery",
             "client %", "publisher %", "store %", "machine %", "p99 ms", "lost",
             "drained"]]  # fmt: skip
    chosen: dict[str, dict[str, Any]] = {}
    for name in names:
        t = at_rate(results.ladder.get(name, []), load)
        if t is None or "error" in t:
            continue
        chosen[name] = t
        rows.append([name + flags(t), num(t["delivered_per_s"]), _cpu(t),
                     num(t["hub_cpu_us_per_delivery"], 2), num(t["client_cpu_pct"]),
                     num(t["publisher_cpu_pct"]), num(t["redis_cpu_pct"]),
                     num(t["machine_cpu_pct"]), num(t["p99_ms"], 1), num(t["loss"]),
                     f"in {t['drain_s']:g} s" if t["drained"] else "no"])  # fmt: skip
    lines += table(rows, markdown)
    lines.append("")
    a, b = chosen.get(ONE), chosen.get(TWO)
    if a and b and a["delivered_per_s"]:
        lines.append(
            f"Ratio redis-2 / redis-1, delivered/s at that load: "
            f"{b['delivered_per_s'] / a['delivered_per_s']:.2f}x"
        )
    most = {
        n: max((t for t in results.ladder.get(n, []) if "error" not in t),
               key=lambda t: t["delivered_per_s"], default=None)
        for n in names
    }  # fmt: skip
    lines.append(
        "Most delivered/s in any step (the capacity, once a step saturates): "
        + ", ".join(f"{n} {num(t['delivered_per_s']) if t else '—'}" for n, t in most.items())
    )
    m1, m2 = most.get(ONE), most.get(TWO)
    if m1 and m2 and m1["delivered_per_s"]:
        lines.append(
            f"Ratio redis-2 / redis-1, most delivered/s: "
            f"{m2['delivered_per_s'] / m1['delivered_per_s']:.2f}x"
        )
    best = {n: best_kept_up(results.ladder.get(n, [])) for n in names}
    kept = ", ".join(
        f"{n} {t['params']['rate']:,.0f} ev/s ({t['delivered_per_s']:,.0f} deliveries/s)"
        if t
        else f"{n} none"
        for n, t in best.items()
    )
    lines.append(f"Highest step kept up: {kept}")
    b1, b2 = best.get(ONE), best.get(TWO)
    if b1 and b2:
        lines.append(
            f"Ratio redis-2 / redis-1, highest rate kept up: "
            f"{b2['params']['rate'] / b1['params']['rate']:.2f}x"
            + (
                " (redis-2 kept up with every step: a lower bound)"
                if b2["params"]["rate"] == top
                else ""
            )
        )
    # Only at saturation: below it, per-read costs that load batches away inflate it.
    if (
        sat is not None
        and a
        and b
        and a["hub_cpu_us_per_delivery"]
        and b["hub_cpu_us_per_delivery"]
    ):
        per_core = a["hub_cpu_us_per_delivery"] / b["hub_cpu_us_per_delivery"]
        lines.append(
            f"Hub CPU per delivery: redis-1 {a['hub_cpu_us_per_delivery']:.2f} us, redis-2 "
            f"{b['hub_cpu_us_per_delivery']:.2f} us (summed over its processes): with a core per "
            f"process and nothing else short, 2 processes would deliver ~{2 * per_core:.2f}x "
            "(a projection, not a measurement)"
        )
    if a and a.get("redis_commands"):
        events = max(1, a["publisher"]["measured_events"])
        top3 = list(a["redis_commands"].items())[:3]
        lines.append(
            f"Redis in redis-1 at that load: {a['redis_cpu_pct']:.0f}% of a core; per published "
            "event: "
            + ", ".join(f"{cmd} {st['usec'] / events:.0f} us" for cmd, st in top3)
            + " (INFO commandstats; a script's time includes the commands it runs)"
        )
    cpus = results.setup.get("cpus") or 1
    if b:
        rest = b["client_cpu_pct"] + b["publisher_cpu_pct"] + (b["redis_cpu_pct"] or 0)
        lines += [
            "",
            f"Caveat: this machine has {cpus} cores. In redis-2 the load client, the "
            f"publisher and Redis used {rest:.0f}% of a core between them and the machine was "
            f"{b['machine_cpu_pct']:.0f}% busy (of {100 * cpus}%): whatever they use comes out "
            "of the two hubs' cores, so the ratio is bounded by the machine, not by the hub. "
            "Run hubs, clients and Redis on separate machines for the real ratio.",
        ]
    lines += ["", *LEGEND]
    return "\n".join(lines)


# --------------------------------------------------------------------------- #
# CLI
# --------------------------------------------------------------------------- #


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    d = Plan()
    p = cli.parser(
        "python -m bench.scaleout",
        __doc__,
        d,
        quick="smoke run (~1 min), not figures",
        check="exit 1 if any step lost an event",
        unit="step",
    )
    p.add_argument("--configs", default=",".join(c.name for c in CONFIGS), help="comma list")
    p.add_argument("--subs", type=int, help=f"subscribers in all ({d.subs})")
    p.add_argument("--channels", type=int, help=f"({d.channels})")
    p.add_argument("--latency-rate", type=float, help=f"ev/s ({d.latency_rate:g})")
    p.add_argument("--rates", type=cli.floats, help="saturation ladder, ev/s, e.g. 1000,2000,4000")
    p.add_argument("--batch", type=int, help=f"events per publish interval ({d.batch})")
    p.add_argument(
        "--connections", type=int, help=f"publisher connections per process ({d.connections})"
    )
    p.add_argument("--keep-up", type=float, help=f"share of deliveries to keep up ({d.keep_up})")
    p.add_argument("--p99-limit-ms", type=float, help=f"({d.p99_limit_ms:g})")
    p.add_argument("--history-size", type=int, help="hub history_size (config.toml's)")
    p.add_argument("--pin", choices=["hubs", "none"], help="hubs: process i on core i (default)")
    p.add_argument("--redis-url", help=f"({d.redis_url})")
    p.add_argument(
        "--hub-env",
        action="append",
        metavar="NAME=VALUE",
        help="extra environment for the hub processes (repeatable)",
    )
    return p.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    plan = Plan.quick() if args.quick else Plan()
    if args.hub_env and not all("=" in item for item in args.hub_env):
        raise SystemExit("--hub-env takes NAME=VALUE")
    if args.hub_env:
        args.hub_env = tuple(args.hub_env)
    return cli.plan_from_args(plan, args)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json:
        saved = cli.load_results(args.from_json)
        results = Results(**saved["results"])
        results.setup.setdefault("cpus", saved.get("meta", {}).get("cpus"))
        print(build_report(results, cli.plan_from_saved(Plan, saved), args.markdown))
        return 0
    plan = make_plan(args)
    by_name = {c.name: c for c in CONFIGS}
    wanted = [n for n in args.configs.split(",") if n]
    unknown = [n for n in wanted if n not in by_name]
    if unknown or plan.subs % plan.channels:
        print(
            f"unknown config: {', '.join(unknown)}"
            if unknown
            else f"--subs ({plan.subs}) must be a multiple of --channels ({plan.channels})",
            file=sys.stderr,
        )
        return 2
    nofile = raise_nofile_limit()
    uvloop = install_uvloop()
    log(f"client: uvloop={uvloop} nofile={nofile}; {pinning_note(plan)}")
    started = time.time()
    configs = [by_name[n] for n in wanted]
    results = cli.run_in_workdir(
        args.workdir, "ssehub-scaleout-", lambda workdir: run(plan, workdir, configs)
    )
    log(f"done in {time.time() - started:.0f}s")
    print(build_report(results, plan, args.markdown))
    if args.json:
        meta = cli.meta("python -m bench.scaleout", argv, started, uvloop)
        cli.write_results(args.json, meta, plan, asdict(results))
        log(f"results written to {args.json}")
    steps = [*results.latency.values(), *(t for ts in results.ladder.values() for t in ts)]
    if any("error" in s for s in steps):
        log("some steps could not run (see above)")
        return 1
    if args.check and any(s.get("loss") for s in steps):
        log("--check: events were lost, doubled or reordered")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
