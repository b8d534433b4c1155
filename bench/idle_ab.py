"""Idle memory per subscriber, A/B across checkouts in one run, interleaved.

``python -m bench.idle_ab --subs 10000 --rounds 3 /path/to/main .`` starts each checkout's hub
(memory backplane, per-address limits off), opens a tenth of the streams as a warm-up, then
``--subs`` idle streams on 100 channels, and prints the RSS growth per stream; the order of the
checkouts alternates from round to round. Within a run the rounds agree to about 10 B; between
runs a checkout's figure may move by ~100 B, so compare checkouts of the same run only.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from bench.loadclient import SubscriberPool, install_uvloop, raise_nofile_limit
from bench.servers import Server, ServerSpec, free_port

__all__ = ["main"]

SETTINGS = {
    "HUB_BACKPLANE": "memory",
    "HUB_MAX_SUBSCRIBERS": "100000",
    "HUB_SUBSCRIBE_RATE": "0",
    "HUB_MAX_CLIENT_STREAMS": "0",
    "HUB_MAX_CLIENT_CHANNELS": "0",
}


async def per_stream(root: Path, subs: int, workdir: Path) -> float:
    """Bytes of RSS per idle stream of one hub of ``root``."""
    server = Server(ServerSpec("hub", "hub", baseline=False, root=root), free_port(), workdir,
                    env=SETTINGS)  # fmt: skip
    await server.start()
    pool = SubscriberPool("127.0.0.1", server.port)
    try:
        warm = [(f"/channels/w-{i % 100}/events", (i % 100,)) for i in range(subs // 10)]
        await pool.connect(warm, limit_s=120)
        await asyncio.sleep(2)
        before = server.rss_kib()
        idle = [(f"/channels/i-{i % 100}/events", (i % 100,)) for i in range(subs)]
        await pool.connect(idle, limit_s=300)
        await asyncio.sleep(2)
        return (server.rss_kib() - before) * 1024 / subs
    finally:
        pool.close()
        server.stop()


async def run(roots: list[Path], subs: int, rounds: int) -> None:
    raise_nofile_limit()
    found: dict[Path, list[float]] = {root: [] for root in roots}
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(rounds):
            for root in roots if index % 2 == 0 else roots[::-1]:
                value = await per_stream(root, subs, Path(tmp))
                found[root].append(value)
                print(f"round {index} {root}: {value:.0f} B per idle stream", flush=True)
    for root, values in found.items():
        print(f"{root}: {min(values):.0f}-{max(values):.0f} B per idle stream")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.idle_ab", description=__doc__)
    parser.add_argument("roots", nargs="+", type=Path, help="checkouts to compare")
    parser.add_argument("--subs", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    install_uvloop()
    asyncio.run(run([root.resolve() for root in args.roots], args.subs, args.rounds))


if __name__ == "__main__":
    main()
