"""Run the ssehub benchmark suite against the hub and its baselines, in one command.

    python -m bench.run            # full suite (~15 min)
    python -m bench.run --quick    # smoke run for CI (~1 min)
    python -m bench.run --from-json out.json --markdown   # re-print a table

This process is the load client (pinned to core 1); each server is a fresh
subprocess pinned to core 0 for every scenario, so no scenario inherits another's
leftovers (the naive baseline leaks a handler per dead subscriber until its next
write). The publisher is a separate process (see ``loadclient.py``). Figures for
every server come from the same run, and each is printed with its ratio to the
baselines.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/run.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import cli
from bench.loadclient import (
    Histogram,
    SubscriberPool,
    install_uvloop,
    raise_nofile_limit,
)
from bench.measure import (
    CLIENT_SATURATED,
    Reading,
    Span,
    cli_flags,
    log,
    quietest,
    run_publisher,
)
from bench.report import LEGEND, flags, num, table
from bench.servers import NGINX, SERVERS, Server, ServerSpec, free_port
from bench.wrk import WRK, wrk_publish

__all__ = ["Plan", "main"]

CLIENT_CORE = 1

#: 100 real IANA zones for the clock scenario (canonical names or tzdata links).
_ZONES = """
Africa/Abidjan Africa/Algiers Africa/Cairo Africa/Casablanca Africa/Johannesburg
Africa/Lagos Africa/Maputo Africa/Nairobi Africa/Tripoli Africa/Tunis Africa/Windhoek
America/Anchorage America/Argentina/Buenos_Aires America/Bogota America/Caracas
America/Chicago America/Denver America/Edmonton America/Guatemala America/Halifax
America/Havana America/La_Paz America/Lima America/Los_Angeles America/Mexico_City
America/Montevideo America/New_York America/Panama America/Phoenix America/Puerto_Rico
America/Santiago America/Sao_Paulo America/St_Johns America/Toronto America/Vancouver
America/Winnipeg Antarctica/Casey Asia/Almaty Asia/Amman Asia/Baghdad Asia/Baku
Asia/Bangkok Asia/Beirut Asia/Colombo Asia/Damascus Asia/Dhaka Asia/Dubai
Asia/Ho_Chi_Minh Asia/Hong_Kong Asia/Jakarta Asia/Jerusalem Asia/Kabul Asia/Karachi
Asia/Kathmandu Asia/Kolkata Asia/Kuala_Lumpur Asia/Manila Asia/Qatar Asia/Riyadh
Asia/Seoul Asia/Shanghai Asia/Singapore Asia/Taipei Asia/Tashkent Asia/Tehran
Asia/Tokyo Asia/Ulaanbaatar Asia/Vladivostok Asia/Yangon Asia/Yekaterinburg
Atlantic/Azores Atlantic/Cape_Verde Atlantic/Reykjavik Australia/Adelaide
Australia/Brisbane Australia/Darwin Australia/Perth Australia/Sydney Europe/Amsterdam
Europe/Athens Europe/Berlin Europe/Brussels Europe/Bucharest Europe/Dublin
Europe/Helsinki Europe/Istanbul Europe/Kyiv Europe/Lisbon Europe/London Europe/Madrid
Europe/Moscow Europe/Paris Europe/Prague Europe/Rome Europe/Stockholm Europe/Vienna
Europe/Warsaw Europe/Zurich Pacific/Auckland Pacific/Honolulu
"""
TIMEZONES = tuple(_ZONES.split())

SCENARIOS = (
    "fanout",
    "bursts",
    "search",
    "steady",
    "big",
    "many",
    "many-stream",
    "clocks",
    "idle",
    "publish",
)
#: Scenarios only the hub runs (the others have no such feature).
HUB_ONLY = ("clocks", "many-stream")
#: Targets that serve only some scenarios: the bare aiohttp handler has no streams.
ONLY = {"aiohttp": ("publish",)}


@dataclass
class Plan:
    """Sizes, rates and durations of every scenario (all settable by flag)."""

    warmup: float = 2.0
    duration: float = 10.0
    fanout_subs: int = 1000
    fanout_rate: float = 50.0
    burst_batch: int = 10
    search_subs: int = 5000
    search_rates: tuple[float, ...] = (2, 5, 10, 20, 50)
    search_p99_ms: float = 100.0
    steady_subs: int = 5000
    steady_rate: float = 10.0
    big_subs: int = 10000
    big_rate: float = 5.0
    many_subs: int = 10000
    many_channels: int = 1000
    many_rate: float = 500.0
    clock_subs: int = 10000
    clock_channels: int = 100
    clock_duration: float = 20.0
    idle_sizes: tuple[int, ...] = (10000, 15000)
    idle_settle: float = 2.0  # seconds between connecting and reading RSS
    pub_duration: float = 5.0
    pub_batch: int = 100
    pub_connections: int = 8
    pad: int = 0
    wait_quiet: float = 0.0  # seconds to wait for a quiet machine before each scenario
    retries: int = 0  # re-runs of a scenario whose window was noisy

    @classmethod
    def quick(cls) -> Plan:
        """Small sizes and short windows: a smoke run (~20 s per server), not figures."""
        return cls(
            warmup=0.3,
            duration=1.0,
            fanout_subs=200,
            fanout_rate=20.0,
            search_subs=1000,
            search_rates=(20,),
            steady_subs=1000,
            big_subs=2000,
            many_subs=1000,
            many_channels=100,
            many_rate=100.0,
            clock_subs=1000,
            clock_duration=2.0,
            idle_sizes=(2000,),
            idle_settle=0.5,
            pub_duration=0.5,
        )


def take_window(server: Server, pool: SubscriberPool | None) -> Reading:
    """A reading of ``server``'s CPU and the pool's deliveries (none without a pool)."""
    return Reading.now([server.cpu_seconds()], pool.delivered if pool else 0)


@dataclass
class Measured:
    """Server and client cost over a window, and how busy the rest of the machine was."""

    seconds: float
    server_cpu_s: float
    server_cpu_pct: float
    client_cpu_pct: float
    client_saturated: bool
    other_cpu_pct: float
    noisy: bool
    delivered: int
    cpu_us_per_event: float | None

    @classmethod
    def between(cls, a: Reading, b: Reading, publisher_cpu_s: float = 0.0) -> Measured:
        span = Span.between(a, b, publisher_cpu_s)
        (server,) = span.cpu
        return cls(
            seconds=round(span.wall, 3),
            server_cpu_s=round(server, 3),
            server_cpu_pct=span.pct(server),
            client_cpu_pct=span.pct(span.client),
            client_saturated=span.saturated(span.client),
            other_cpu_pct=span.pct(span.other),
            noisy=span.noisy,
            delivered=span.delivered,
            cpu_us_per_event=round(1e6 * server / span.delivered, 2) if span.delivered else None,
        )


@dataclass
class StartMark:
    """Takes the window's first reading when the publisher says it starts."""

    server: Server
    pool: SubscriberPool | None
    window: Reading | None = None

    def take(self) -> None:
        if self.window is None:
            self.window = take_window(self.server, self.pool)

    def measured_until_now(self, publisher_cpu_s: float = 0.0) -> Measured:
        if self.window is None:
            raise RuntimeError("the publisher never started its measured window")
        end = take_window(self.server, self.pool)
        return Measured.between(self.window, end, publisher_cpu_s)


# --------------------------------------------------------------------------- #
# Scenario building blocks
# --------------------------------------------------------------------------- #


async def _publish_to(
    server: Server,
    args: Sequence[str],
    on_measure_start: Callable[[], object],
    limit_s: float,
) -> dict[str, Any]:
    """Run ``loadclient.py publish`` against ``server`` (see ``measure.run_publisher``)."""
    return await run_publisher(
        server.workdir, [server.port], server.spec.api, args, on_measure_start, limit_s
    )


async def connect_pool(
    server: Server, specs: Sequence[tuple[str, tuple[int, ...]]]
) -> SubscriberPool:
    pool = SubscriberPool("127.0.0.1", server.port)
    took = await pool.connect(specs, limit_s=max(60.0, len(specs) / 100))
    log(
        f"  {len(pool.subs)}/{len(specs)} subscribers connected in {took:.1f}s"
        + (f" errors={dict(pool.connect_errors)}" if pool.connect_errors else "")
    )
    await asyncio.sleep(0.3)  # let the server finish registering/writing preludes
    return pool


async def rate_scenario(
    server: Server,
    plan: Plan,
    *,
    tag: str,
    subs: int,
    channels: int,
    rate: float,
    batch: int = 1,
    mode: str = "rate",
) -> dict[str, Any]:
    """``subs`` subscribers spread evenly over ``channels``; publish ``rate`` ev/s
    (in requests of ``batch`` events, or with ``mode="rate-stream"`` as lines of one
    ``POST /publish/stream``) for warm-up + window; exact loss, latency, and server CPU
    per delivered event over the measured window."""
    prefix = f"b-{tag}-"
    specs = [
        (server.spec.sub_path(f"{prefix}{i % channels}"), (i % channels,)) for i in range(subs)
    ]
    pool = await connect_pool(server, specs)
    mark = StartMark(server, pool)
    try:
        done = await _publish_to(
            server,
            cli_flags(
                channel_prefix=prefix,
                channels=channels,
                mode=mode,
                rate=rate,
                batch=batch,
                warmup=plan.warmup,
                duration=plan.duration,
                pad=plan.pad,
            ),
            mark.take,
            limit_s=plan.warmup + plan.duration + 120,
        )
        published = done["published"]
        drained = await pool.drain(published, min(10.0, max(2.0, plan.duration / 2)))
        measured = mark.measured_until_now(done["measure_cpu_s"])
        report = pool.report(published, subs)
    finally:
        pool.close()
    loss = report.loss
    return {
        "params": {
            "subs": subs,
            "channels": channels,
            "rate": rate,
            "batch": batch,
            "mode": mode,
        },
        **asdict(measured),
        "drained": drained,
        "connected": report.connected,
        "loss": loss,
        "p50_ms": report.latency_ms["p50"],
        "p99_ms": report.latency_ms["p99"],
        "max_ms": report.latency_ms["max"],
        "server_rss_kib": server.rss_kib(),
        "pool": asdict(report),
        "publisher": done,
    }


def _ok(result: dict[str, Any], subs: int, p99_limit: float) -> bool:
    p99 = result["p99_ms"]
    return (
        result["loss"] == 0
        and result["connected"] == subs
        and result["publisher"]["failed_requests"] == 0
        and p99 is not None
        and p99 <= p99_limit
    )


# --------------------------------------------------------------------------- #
# Scenarios: each gets a fresh server
# --------------------------------------------------------------------------- #


def rate_loads(plan: Plan) -> dict[str, dict[str, Any]]:
    """The scenarios that are one ``rate_scenario`` each, with its arguments."""
    fanout = {"subs": plan.fanout_subs, "channels": 1, "rate": plan.fanout_rate}
    many = {
        "tag": "many",
        "subs": plan.many_subs,
        "channels": plan.many_channels,
        "rate": plan.many_rate,
    }
    return {
        "fanout": {"tag": "fan", **fanout},
        "bursts": {"tag": "burst", **fanout, "batch": plan.burst_batch},
        "steady": {
            "tag": "steady",
            "subs": plan.steady_subs,
            "channels": 1,
            "rate": plan.steady_rate,
        },
        "big": {"tag": "big", "subs": plan.big_subs, "channels": 1, "rate": plan.big_rate},
        "many": many,
        # The same load with the hub's streaming publish, as a service publishing this much
        # would send it: the per-request cost of HTTP is what "many" mostly measures.
        "many-stream": {**many, "tag": "manys", "mode": "rate-stream"},
    }


async def scenario_search(spec: ServerSpec, plan: Plan, workdir: Path) -> dict[str, Any]:
    """Rising rates at ``search_subs`` subscribers, a fresh server per trial;
    stop at the first rate that misses p99 ≤ limit with zero loss."""
    trials = []
    best = 0.0
    limited_by_client = False
    for rate in plan.search_rates:
        log(f"  rate {rate:g} ev/s")
        result = await measured(
            spec,
            plan,
            workdir / f"search-{rate:g}",
            functools.partial(
                rate_scenario,
                plan=plan,
                tag=f"s{rate:g}",
                subs=plan.search_subs,
                channels=1,
                rate=rate,
            ),
        )
        ok = _ok(result, plan.search_subs, plan.search_p99_ms)
        trials.append({"rate": rate, "ok": ok, **_brief(result)})
        if not ok:
            limited_by_client = bool(result.get("client_saturated"))
            break
        best = rate
    all_passed = len(trials) == len(plan.search_rates) and trials[-1]["ok"]
    if not best:
        label = f"<{plan.search_rates[0]:g}"
    else:
        label = f">={best:g}" if all_passed else f"{best:g}"
    return {
        "best_rate": best,
        "best_label": label,
        "all_passed": all_passed,
        "limited_by_client": limited_by_client,
        "client_saturated": limited_by_client,
        "noisy": any(t.get("noisy") for t in trials),
        "trials": trials,
    }


def _brief(result: dict[str, Any]) -> dict[str, Any]:
    keys: tuple[str, ...] = ("p50_ms", "p99_ms", "max_ms", "loss", "connected", "server_cpu_pct")
    keys += ("client_cpu_pct", "client_saturated", "cpu_us_per_event", "other_cpu_pct")
    keys += ("noisy", "noisy_attempts", "error")
    return {k: result[k] for k in keys if k in result}


async def scenario_clocks(server: Server, plan: Plan) -> dict[str, Any]:
    """Hub only: subscribers over clock channels ``time/<tz>/1``; the server's
    CPU to keep them all ticking, and whether every subscriber gets ~1 tick/s."""
    zones = TIMEZONES[: plan.clock_channels]
    specs = [
        (f"/channels/time/{zones[i % len(zones)]}/1/events", ()) for i in range(plan.clock_subs)
    ]
    pool = await connect_pool(server, specs)
    try:
        await asyncio.sleep(plan.warmup + 1.0)  # past the tick sent on subscribe
        ticks0 = sum(s.other for s in pool.subs)
        pool.clock_lag = Histogram()  # the tick sent on subscribe is not on time
        start = take_window(server, pool)
        await asyncio.sleep(plan.clock_duration)
        end = take_window(server, pool)
        ticks = sum(s.other for s in pool.subs) - ticks0
        report = pool.report(None, plan.clock_subs)
    finally:
        pool.close()
    measured = Measured.between(start, end)
    per_sub = ticks / max(report.connected, 1) / measured.seconds
    return {
        "params": {"subs": plan.clock_subs, "channels": len(zones)},
        **asdict(measured),
        "connected": report.connected,
        "ticks": ticks,
        "ticks_per_sub_per_s": round(per_sub, 3),
        "ticks_per_subscriber": report.other_per_subscriber,
        "tick_lag_ms": report.clock_lag_ms,
        "server_rss_kib": server.rss_kib(),
    }


async def scenario_idle(server: Server, plan: Plan) -> dict[str, Any]:
    """RSS growth per idle subscriber, against the server's RSS before any."""
    await asyncio.sleep(plan.idle_settle)
    before = server.rss_kib()
    pool = SubscriberPool("127.0.0.1", server.port)
    sizes: dict[str, Any] = {}
    try:
        for size in sorted(plan.idle_sizes):
            more = size - len(pool.subs)
            specs = [(server.spec.sub_path("b-idle"), (0,))] * more
            await pool.connect(specs, limit_s=max(60.0, size / 100))
            await asyncio.sleep(plan.idle_settle)
            rss = server.rss_kib()
            connected = sum(1 for s in pool.subs if not s.closed)
            log(f"  {connected}/{size} idle: RSS {rss} KiB (before {before} KiB)")
            sizes[str(size)] = {
                "connected": connected,
                "rss_kib": rss,
                "per_sub_kib": round((rss - before) / connected, 2) if connected else None,
                "connect_errors": dict(pool.connect_errors),
            }
            if connected < size:
                break
    finally:
        pool.close()
    return {"rss_before_kib": before, "sizes": sizes}


async def scenario_publish(server: Server, plan: Plan) -> dict[str, Any]:
    """Publish throughput without subscribers: sequential single publishes on one
    keep-alive connection, then batches of ``pub_batch``, then single publishes on
    ``pub_connections`` connections at once, then one streaming publish."""
    out: dict[str, Any] = {}
    for name, batch in (("single", 1), ("batch", plan.pub_batch)):
        mark = StartMark(server, None)
        done = await _publish_to(
            server,
            cli_flags(
                channel_prefix=f"b-pub-{name}-",
                mode="throughput",
                batch=batch,
                warmup=min(plan.warmup, 1.0),
                duration=plan.pub_duration,
            ),
            mark.take,
            limit_s=plan.pub_duration + 60,
        )
        measured = mark.measured_until_now(done["cpu_s"])
        out[name] = {
            "batch": batch,
            "events_per_s": done["events_per_s"],
            "requests_per_s": done["requests_per_s"],
            "failed_requests": done["failed_requests"],
            "server_cpu_pct": measured.server_cpu_pct,
            "publisher_cpu_pct": done["cpu_pct"],
            "client_saturated": done["cpu_pct"] > 100 * CLIENT_SATURATED,
            "other_cpu_pct": measured.other_cpu_pct,
            "noisy": measured.noisy,
            "publisher": done,
        }
    out["multi"] = await _publish_multi(server, plan, plan.pub_connections)
    # the same on one connection: the single row's Python publisher spends more per request
    # than the fast servers do, so there it measures itself; wrk does not
    out["one"] = await _publish_multi(server, plan, 1)
    out["stream"] = await _publish_stream(server, plan)
    out["client_saturated"] = any(out[n]["client_saturated"] for n in PUBLISH_PARTS)
    out["noisy"] = any(out[n]["noisy"] for n in PUBLISH_PARTS)
    return out


PUBLISH_PARTS = ("single", "batch", "multi", "one", "stream")


async def _publish_multi(server: Server, plan: Plan, n: int) -> dict[str, Any]:
    """Single publishes, each connection sending its next request on the previous
    answer, on ``n`` connections: wrk if installed (see ``bench/wrk.py``), else our
    publisher."""
    channel = f"b-pub-multi{n}-0"
    if WRK is None:
        mark = StartMark(server, None)
        done = await _publish_to(
            server,
            cli_flags(
                channel_prefix=f"b-pub-multi{n}-",
                mode="throughput",
                connections=n,
                warmup=min(plan.warmup, 1.0),
                duration=plan.pub_duration,
            ),
            mark.take,
            limit_s=plan.pub_duration + 60,
        )
        measured = mark.measured_until_now(done["cpu_s"])
        client = "loadclient"
    else:
        if plan.warmup >= 1.0:
            await wrk_publish(server.port, server.spec.api, channel, n, 1, server.workdir, 1)
        start = take_window(server, None)
        done = await wrk_publish(
            server.port, server.spec.api, channel, n, plan.pub_duration, server.workdir, 1
        )
        measured = Measured.between(start, take_window(server, None), done["cpu_s"])
        done["events_per_s"] = round(done["requests"] / done["elapsed_s"], 1)
        done["failed_requests"] = done["non_2xx"] + done["socket_errors"]
        client = "wrk"
    return {
        "connections": n,
        "client": client,
        "events_per_s": done["events_per_s"],
        "failed_requests": done["failed_requests"],
        "server_cpu_pct": measured.server_cpu_pct,
        "server_cpu_us_per_publish": (
            round(1e6 * measured.server_cpu_s / (done["events_per_s"] * measured.seconds), 2)
            if done["events_per_s"]
            else None
        ),
        "publisher_cpu_pct": done["cpu_pct"],
        "client_saturated": done["cpu_pct"] > 100 * CLIENT_SATURATED,
        "other_cpu_pct": measured.other_cpu_pct,
        "noisy": measured.noisy,
        "publisher": done,
    }


async def _publish_stream(server: Server, plan: Plan) -> dict[str, Any]:
    """``POST /publish/stream``: ndjson items up, one receipt per line down, on one
    connection; ``shown`` is "n/a" when the server has no such route."""
    mark = StartMark(server, None)
    done = await _publish_to(
        server,
        cli_flags(
            channel_prefix="b-pub-stream-",
            mode="stream",
            warmup=min(plan.warmup, 1.0),
            duration=plan.pub_duration,
        ),
        mark.take,
        limit_s=plan.pub_duration + 60,
    )
    measured = mark.measured_until_now(done["cpu_s"])
    status = done["status"]
    return {
        "status": status,
        "shown": None if status == 200 else "n/a" if status == 404 else f"n/a ({status})",
        "events_per_s": done["events_per_s"],
        "failed_requests": done["failed_requests"] + done["refused"] + done["unanswered"],
        "server_cpu_pct": measured.server_cpu_pct,
        "publisher_cpu_pct": done["cpu_pct"],
        "client_saturated": status == 200 and done["cpu_pct"] > 100 * CLIENT_SATURATED,
        "other_cpu_pct": measured.other_cpu_pct,
        "noisy": measured.noisy,
        "publisher": done,
    }


async def with_server(
    spec: ServerSpec,
    workdir: Path,
    body: Callable[[Server], Awaitable[dict[str, Any]]],
) -> dict[str, Any]:
    server = Server(spec, free_port(), workdir)
    try:
        await server.start()
        result = await body(server)
        result["server_exit"] = server.proc.poll() if server.proc else None
        return result
    except Exception as exc:  # one failed scenario must not end the run
        log(f"  ERROR {type(exc).__name__}: {exc}")
        return {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        server.stop()


async def measured(
    spec: ServerSpec,
    plan: Plan,
    workdir: Path,
    body: Callable[[Server], Awaitable[dict[str, Any]]],
) -> dict[str, Any]:
    """Run ``body`` on a fresh server; if other processes were busy during its
    window, wait for quiet and run it again (``plan.retries`` times), keeping the
    quietest attempt. The attempts are kept in the result."""
    return await quietest(
        lambda n: with_server(spec, workdir / f"try{n}", body),
        retries=plan.retries,
        wait_quiet_s=plan.wait_quiet,
        noise=_noise,
    )


def _noise(result: dict[str, Any]) -> float:
    """Share (%) of a core used by other processes during the measured window."""
    parts = [result.get("other_cpu_pct")]
    parts += [result[k].get("other_cpu_pct") for k in PUBLISH_PARTS if k in result]
    return max((p for p in parts if p is not None), default=0.0)


async def run_target(
    spec: ServerSpec, plan: Plan, scenarios: Sequence[str], workdir: Path
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    rates = rate_loads(plan)
    others = {"clocks": scenario_clocks, "idle": scenario_idle, "publish": scenario_publish}
    for name in scenarios:
        if name in HUB_ONLY and not spec.name.startswith("hub"):
            continue
        if spec.name in ONLY and name not in ONLY[spec.name]:
            continue
        log(f"{spec.name}: {name}")
        if name == "search":
            results[name] = await scenario_search(spec, plan, workdir / name)
        else:
            body = (
                functools.partial(rate_scenario, plan=plan, **rates[name])
                if name in rates
                else functools.partial(others[name], plan=plan)
            )
            results[name] = await measured(spec, plan, workdir / name, body)
        if results[name].get("client_saturated"):
            log("  note: load client saturated (figure is client-limited)")
        if results[name].get("noisy"):
            log("  note: other processes were busy during the window (figures suspect)")
    return results


# --------------------------------------------------------------------------- #
# Table
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class Row:
    """One line of the table: where its figure sits in a scenario's result."""

    label: str
    scenario: str
    path: tuple[str, ...]
    better: str  # "lower" | "higher"
    digits: int = 1
    flagged: bool = True  # mark client saturation (*) and loss (!)
    shown: tuple[str, ...] = ()  # a text to print instead of the number, if any

    def value(self, result: dict[str, Any]) -> Any:
        node: Any = result
        for key in self.path:
            node = node.get(key) if isinstance(node, dict) else None
        return node

    def flags(self, result: dict[str, Any]) -> str:
        if not self.flagged:
            return ""
        head = result.get(self.path[0]) if self.path else None
        if isinstance(head, dict) and "client_saturated" in head:
            result = head  # e.g. publish: "single" and "batch" have their own
        return flags(result)


def rows_for(plan: Plan) -> list[Row]:
    def k(n: int) -> str:
        return f"{n / 1000:g}k" if n >= 1000 else str(n)

    fan = f"{k(plan.fanout_subs)} subs x {plan.fanout_rate:g} ev/s"
    burst = f"{fan}, batches of {plan.burst_batch}"
    big = f"{k(plan.big_subs)} subs x {plan.big_rate:g} ev/s"
    many = f"many {k(plan.many_subs)} subs / {k(plan.many_channels)} ch, {plan.many_rate:g} ev/s"
    clocks = f"clocks {k(plan.clock_subs)} subs / {plan.clock_channels} tz"
    search = f"{k(plan.search_subs)} subs: best rate, p99<={plan.search_p99_ms:g}ms + no loss"
    steady = f"{k(plan.steady_subs)} subs x {plan.steady_rate:g} ev/s"
    cpu, p99, loss = ("cpu_us_per_event",), ("p99_ms",), ("loss",)
    rows = [
        Row(f"fan-out {fan}: server CPU us/event", "fanout", cpu, "lower", 2),
        Row(f"fan-out {fan}: p99 ms", "fanout", p99, "lower"),
        Row(f"fan-out {fan}: lost events", "fanout", loss, "lower", 0),
        Row(f"bursts {burst}: server CPU us/event", "bursts", cpu, "lower", 2),
        Row(f"bursts {burst}: p99 ms", "bursts", p99, "lower"),
        Row(f"{search} (ev/s)", "search", ("best_rate",), "higher", 0, shown=("best_label",)),
        Row(f"{steady}: p99 ms", "steady", p99, "lower"),
        Row(f"{big}: p99 ms", "big", p99, "lower"),
        Row(f"{big}: lost events", "big", loss, "lower", 0),
        Row(f"{big}: server CPU %", "big", ("server_cpu_pct",), "lower"),
        Row(f"{many}: p99 ms", "many", p99, "lower"),
        Row(f"{many}: server CPU us/event", "many", cpu, "lower", 2),
        Row(f"{many}: lost events", "many", loss, "lower", 0),
        Row(f"{many}, streamed publish: p99 ms", "many-stream", p99, "lower"),
        Row(f"{many}, streamed publish: server CPU us/event", "many-stream", cpu, "lower", 2),
        Row(f"{many}, streamed publish: lost events", "many-stream", loss, "lower", 0),
        Row(f"{clocks}: server CPU %", "clocks", ("server_cpu_pct",), "lower"),
        Row(f"{clocks}: ticks/sub/s", "clocks", ("ticks_per_sub_per_s",), "higher", 3),
    ]
    rows += [
        Row(
            f"idle {k(size)} subs: RSS KiB per subscriber",
            "idle",
            ("sizes", str(size), "per_sub_kib"),
            "lower",
            2,
            flagged=False,
        )
        for size in sorted(plan.idle_sizes)
    ]
    rows += [
        Row(
            "publish single, 1 keep-alive conn (req/s)",
            "publish",
            ("single", "events_per_s"),
            "higher",
            0,
        ),
        Row(
            f"publish single, 1 keep-alive conn, {'wrk' if WRK else 'loadclient'} (req/s)",
            "publish",
            ("one", "events_per_s"),
            "higher",
            0,
        ),
        Row(
            f"publish single, {plan.pub_connections} keep-alive conns (req/s)",
            "publish",
            ("multi", "events_per_s"),
            "higher",
            0,
        ),
        # CPU per request: on a busy machine the rate moves with the load client's share of its
        # core, the server's CPU per request much less (the row bench.ab can compare)
        Row(
            f"publish single, {plan.pub_connections} conns: server CPU us/publish",
            "publish",
            ("multi", "server_cpu_us_per_publish"),
            "lower",
            1,
        ),
        Row(
            f"publish batches of {plan.pub_batch} (events/s)",
            "publish",
            ("batch", "events_per_s"),
            "higher",
            0,
        ),
        Row(
            "publish stream, ndjson on 1 conn (events/s)",
            "publish",
            ("stream", "events_per_s"),
            "higher",
            0,
            shown=("stream", "shown"),
        ),
    ]
    return rows


def build_table(results: dict[str, dict[str, Any]], plan: Plan, markdown: bool = False) -> str:
    targets = list(results)
    # a saved "hub-base" (an earlier checkout) is a baseline even when this run defines none
    baselines = [t for t in targets if t not in SERVERS or SERVERS[t].baseline]
    subjects = [t for t in targets if t not in baselines] or baselines[:1]
    ratio_cols = [(s, b) for s in subjects for b in baselines if s != b]
    if "hub" in targets and "hub2" in targets:  # the price of workers, row by row
        ratio_cols.insert(0, ("hub2", "hub"))
    header = ["metric", *targets, *(f"{s}÷{b}" for s, b in ratio_cols), "better"]
    body: list[list[str]] = []
    for row in rows_for(plan):
        cells = [row.label]
        values: dict[str, Any] = {}
        present = False  # a figure (or an error) for some target: else the row is left out
        for t in targets:
            r = results[t].get(row.scenario)
            if r is None:
                cells.append("n/a")
                continue
            if "error" in r:
                cells.append("error")
                present = True
                continue
            values[t] = row.value(r)
            shown = Row(row.label, row.scenario, row.shown, row.better).value(r)
            present = present or values[t] is not None or (bool(row.shown) and shown is not None)
            text = str(shown) if row.shown and shown is not None else num(values[t], row.digits)
            cells.append(text + row.flags(r))
        for s, b in ratio_cols:
            vs, vb = values.get(s), values.get(b)
            if isinstance(vs, (int, float)) and isinstance(vb, (int, float)) and vb:
                cells.append(f"{vs / vb:.2f}x")
            else:
                cells.append("—")
        cells.append(row.better)
        if present:
            body.append(cells)
    return "\n".join([*table([header, *body], markdown), "", *LEGEND])


# --------------------------------------------------------------------------- #
# CLI
# --------------------------------------------------------------------------- #


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    d = Plan()
    p = cli.parser(
        "python -m bench.run",
        __doc__,
        d,
        quick="smoke run, ~20 s per server (CI)",
        check="exit 1 if the hub lost, doubled or reordered any event (for CI)",
        unit="scenario",
    )
    p.add_argument(
        "--targets",
        default="hub,naive,nchan,uws,floor,aiohttp",
        help=f"comma list of {','.join(SERVERS)} (unavailable ones are skipped)",
    )
    p.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help=f"comma list of {','.join(SCENARIOS)}"
    )
    p.add_argument("--fanout-subs", type=int, help=f"({d.fanout_subs})")
    p.add_argument("--fanout-rate", type=float, help=f"ev/s ({d.fanout_rate:g})")
    p.add_argument("--burst-batch", type=int, help=f"events per publish ({d.burst_batch})")
    p.add_argument("--search-subs", type=int, help=f"({d.search_subs})")
    p.add_argument("--search-rates", type=cli.floats, help="e.g. 2,5,10,20,50")
    p.add_argument("--search-p99-ms", type=float, help=f"({d.search_p99_ms:g})")
    p.add_argument("--steady-subs", type=int, help=f"({d.steady_subs})")
    p.add_argument("--steady-rate", type=float, help=f"ev/s ({d.steady_rate:g})")
    p.add_argument("--big-subs", type=int, help=f"({d.big_subs})")
    p.add_argument("--big-rate", type=float, help=f"ev/s ({d.big_rate:g})")
    p.add_argument("--many-subs", type=int, help=f"({d.many_subs})")
    p.add_argument("--many-channels", type=int, help=f"({d.many_channels})")
    p.add_argument("--many-rate", type=float, help=f"total ev/s ({d.many_rate:g})")
    p.add_argument("--clock-subs", type=int, help=f"({d.clock_subs})")
    p.add_argument("--clock-channels", type=int, help=f"≤ 100 ({d.clock_channels})")
    p.add_argument("--clock-duration", type=float, help=f"seconds ({d.clock_duration:g})")
    p.add_argument("--idle-sizes", type=cli.ints, help="e.g. 10000,15000")
    p.add_argument("--pub-duration", type=float, help=f"seconds ({d.pub_duration:g})")
    p.add_argument("--pub-batch", type=int, help=f"events per /publish ({d.pub_batch})")
    p.add_argument(
        "--pub-connections", type=int, help=f"connections of the 'conns' row ({d.pub_connections})"
    )
    p.add_argument("--pad", type=int, help="padding bytes added to each event (0)")
    return p.parse_args(argv)


async def run_all(
    plan: Plan, targets: Sequence[str], scenarios: Sequence[str], workdir: Path
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in targets:
        spec = SERVERS[name]
        reason = spec.unavailable()
        if reason:
            log(f"skipping {name}: {reason}")
            continue
        results[name] = await run_target(spec, plan, scenarios, workdir / name)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json:
        saved = cli.load_results(args.from_json)
        print(build_table(saved["results"], cli.plan_from_saved(Plan, saved), args.markdown))
        return 0
    plan = cli.plan_from_args(Plan.quick() if args.quick else Plan(), args)
    targets = [t for t in args.targets.split(",") if t]
    scenarios = [s for s in args.scenarios.split(",") if s]
    unknown = [t for t in targets if t not in SERVERS] + [
        s for s in scenarios if s not in SCENARIOS
    ]
    if unknown:
        print(f"unknown target or scenario: {', '.join(unknown)}", file=sys.stderr)
        return 2
    if len(os.sched_getaffinity(0)) >= 2:
        os.sched_setaffinity(0, {CLIENT_CORE})
    else:
        log("only one core: client and server share it, figures are not comparable")
    nofile = raise_nofile_limit()
    uvloop = install_uvloop()
    log(f"client: uvloop={uvloop} nofile={nofile} core={CLIENT_CORE}")
    started = time.time()
    results = cli.run_in_workdir(
        args.workdir,
        "ssehub-bench-",
        lambda workdir: run_all(plan, targets, scenarios, workdir),
    )
    log(f"done in {time.time() - started:.0f}s")
    print(build_table(results, plan, args.markdown))
    failed = [f"{t}/{n}" for t, res in results.items() for n, r in res.items() if "error" in r]
    if args.json:
        meta = cli.meta(
            "python -m bench.run",
            argv,
            started,
            uvloop,
            nginx=cli.version([str(NGINX), "-v"]),
            targets=list(results),
        )
        cli.write_results(args.json, meta, plan, results)
        log(f"results written to {args.json}")
    if failed:
        log(f"scenarios that could not run: {', '.join(failed)}")
        return 1
    if args.check:
        lossy = [f"{t}/{n}" for t, n, loss in _losses(results) if t.startswith("hub") and loss]
        if lossy:
            log(f"--check: the hub lost, doubled or reordered events in {', '.join(lossy)}")
            return 1
    return 0


def _losses(results: dict[str, dict[str, Any]]) -> list[tuple[str, str, int]]:
    """(target, scenario, loss) for every result that counts loss, nested search runs included."""
    found = []
    for target, scenarios in results.items():
        for name, result in scenarios.items():
            runs = [result, *result.get("runs", [])] if isinstance(result, dict) else []
            for run in runs:
                if isinstance(run, dict) and "loss" in run:
                    found.append((target, name, int(run["loss"])))
    return found


if __name__ == "__main__":
    sys.exit(main())
