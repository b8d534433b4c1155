"""A chaos soak: ``python -m bench.soak [--backplane memory|redis] [--quick]``.

Hundreds of subscribers on several channels (single- and multi-channel streams) drop at random
points and resume with ``Last-Event-ID``; some read slowly, some never read, some vanish from
the network (no FIN, no RST: see ``bench.soak_vanish``; only when root, in a private network
namespace the soak re-runs itself in, so the host's network is never touched); several publishers
publish thousands of events with idempotency keys, retrying each until it is accepted. With
``--backplane redis`` the soak starts its OWN redis-server (a free port, append-only with
``appendfsync always``, in a temporary directory, a unique prefix), runs two hub processes on
it, SIGKILLs and restarts hub processes, and restarts Redis itself, mid-run.

At the end it prints one line per figure and exits 1 if anything accepted was lost, delivered
twice or out of order (or a stream was reset: history is sized so that nothing expires, so a
reset would be a loss in disguise).

How it counts: every event's data names its publisher and sequence number, so a duplicate is
seen by payload even if the hub stored it twice under two ids. Every reading subscriber starts
with ``from=start``, so it must end up with every accepted event of its channels; "lost" sums
what each one misses after a final catch-up. "reordered": an event whose position is not above
the last one seen on its channel (per subscriber, across its reconnections).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.soak_clients import T0, Figures, Ledger, publisher, sample_hubs, scrape_drops
from bench.soak_fleet import HubFleet, RedisServer
from bench.soak_subscribers import subscriber
from bench.soak_vanish import Vanished, vanishing_subscriber

__all__ = ["main"]


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--backplane", choices=("memory", "redis"), default="memory")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="workers of each hub (memory: one hub of N workers, one SIGKILLed every few s)",
    )
    parser.add_argument("--quick", action="store_true", help="~60 s, for CI")
    parser.add_argument("--seconds", type=float, help="publishing time (default 150, quick 35)")
    parser.add_argument("--subscribers", type=int, help="default 300, quick 120")
    parser.add_argument("--rate", type=float, help="events/s over all publishers (default 40)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--no-netns",
        action="store_true",
        help="do not re-run inside a private network namespace (then no subscriber vanishes)",
    )
    return parser.parse_args(argv)


async def _chaos(
    fleet: HubFleet, redis: RedisServer | None, seconds: float, figures: Figures
) -> None:
    """SIGKILL a hub every few seconds and restart it; restart Redis at 1/3 and 2/3 of the run.
    On the memory backplane with workers: SIGKILL one worker every few seconds (the hub's
    supervisor starts another)."""
    if redis is None:
        if fleet.workers > 1:
            await _kill_workers(fleet, seconds, figures)
        return
    start = time.monotonic()
    redis_at = [seconds / 3, 2 * seconds / 3]
    while (elapsed := time.monotonic() - start) < seconds:
        await asyncio.sleep(random.uniform(4, 8))
        if redis_at and elapsed >= redis_at[0]:
            redis_at.pop(0)
            print(f"chaos: +{time.monotonic() - T0:.1f} s Redis SIGKILL and restart", flush=True)
            await redis.restart(down=random.uniform(1, 3))
            figures.redis_restarts += 1
            continue
        victim = random.randrange(len(fleet.servers))
        print(f"chaos: +{time.monotonic() - T0:.1f} s SIGKILL hub-{victim}", flush=True)
        await fleet.kill_and_restart(victim, random.uniform(0.5, 2))
        figures.hub_kills += 1


async def _kill_workers(fleet: HubFleet, seconds: float, figures: Figures) -> None:
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        await asyncio.sleep(random.uniform(4, 8))
        workers = fleet.servers[0].pids()[1:]  # the supervisor's children
        if not workers:
            continue
        victim = random.choice(workers)
        print(f"chaos: +{time.monotonic() - T0:.1f} s SIGKILL worker pid {victim}", flush=True)
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)
        figures.hub_kills += 1


async def run(args: argparse.Namespace) -> int:
    rng_seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    random.seed(rng_seed)
    seconds = args.seconds or (35.0 if args.quick else 150.0)
    subscribers = args.subscribers or (120 if args.quick else 300)
    rate = args.rate or 40.0
    workdir = Path(tempfile.mkdtemp(prefix="ssehub-soak-"))
    redis = RedisServer(workdir / "redis") if args.backplane == "redis" else None
    figures = Figures()
    ledger = Ledger()
    vanished = Vanished()
    in_netns = os.environ.get(_NETNS_MARK) == "1"
    channels = [f"soak-{i}" for i in range(8)]
    try:
        if redis is not None:
            await redis.start()
        prefix = f"soak-{uuid.uuid4().hex[:10]}:"
        fleet = HubFleet(
            workdir, 2 if redis else 1, redis.url if redis else "memory", prefix, args.workers
        )
        await fleet.start()
        print(
            f"soak: backplane {args.backplane}, {len(fleet.servers)} hub process(es) of "
            f"{args.workers} worker(s), "
            f"{subscribers} subscribers, {len(channels)} channels, ~{rate:g} events/s for "
            f"{seconds:g} s, seed {rng_seed}",
            flush=True,
        )
        publishing = asyncio.Event()
        publishing.set()
        done_publishing = asyncio.Event()
        kinds = ["single"] * 65 + ["multi"] * 20 + ["slow"] * 8 + ["never"] * 7
        subs = [
            asyncio.create_task(
                subscriber(i, random.choice(kinds), channels, fleet, ledger, figures,
                           done_publishing, seconds + 60)
            )
            for i in range(subscribers)
        ]  # fmt: skip
        if in_netns:
            subs += [
                asyncio.create_task(
                    vanishing_subscriber(f"/channels/{channels[i % 8]}/events", fleet, vanished,
                                         seconds + (10 if args.quick else 40))
                )
                for i in range(max(4, subscribers // 30))
            ]  # fmt: skip
        await asyncio.sleep(1.0)  # let them connect, so most see the first events live
        sampler = asyncio.create_task(sample_hubs(fleet, figures))
        publishers = [
            asyncio.create_task(publisher(p, channels, fleet, ledger, figures, rate / 4, seconds))
            for p in range(4)
        ]
        await asyncio.gather(_chaos(fleet, redis, seconds - 5, figures), *publishers)
        done_publishing.set()
        await asyncio.gather(*subs)
        await asyncio.sleep(0.5)
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        await scrape_drops(fleet, figures)
        figures.final_rss = {name: fleet.rss_kib(i) for i, name in enumerate(fleet.names)}
        fleet.stop()
    finally:
        if redis is not None:
            redis.stop()
        with contextlib.suppress(NameError):
            fleet.stop()
    figures.settle(ledger)
    for line in figures.lines():
        print(line)
    print(vanished.line())
    ok = figures.lost == 0 and figures.duplicated == 0 and figures.reordered == 0
    ok = ok and figures.resets == 0 and figures.accepted > 0
    print("soak:", "PASS" if ok else "FAIL: something accepted was lost, doubled or reordered")
    if ok:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"soak: the hubs' and Redis's logs are in {workdir}")
    return 0 if ok else 1


_NETNS_MARK = "SSEHUB_SOAK_IN_NETNS"


def _can_unshare() -> bool:
    """Root is not always enough (a container may forbid new namespaces): try it once."""
    if not (shutil.which("unshare") and shutil.which("iptables") and shutil.which("ss")):
        return False
    probe = subprocess.run(["unshare", "--net", "--", "true"], capture_output=True, check=False)
    return probe.returncode == 0


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    if os.environ.get(_NETNS_MARK) == "1":
        # our own namespace starts with its loopback down
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    elif not args.no_netns and os.geteuid() == 0 and _can_unshare():
        # Run again inside a private network namespace: the vanishing subscribers' firewall
        # rules then live there, with its own loopback, and never touch the host's network.
        os.environ[_NETNS_MARK] = "1"
        command = [sys.executable, "-m", "bench.soak", *(sys.argv[1:] if argv is None else argv)]
        os.execvp("unshare", ["unshare", "--net", "--", *command])
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
