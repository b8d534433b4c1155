"""What a Durable Stream's operations cost on the NATS backplane, against its native publish.

    python -m bench.nats_streams              # 12 rounds, ~30 s
    python -m bench.nats_streams --rounds 3   # smoke run

The backplane alone (no HTTP: the dialect's own cost is the same on every backplane), on a
nats-server of the run's own (``bench.nats_store``). Each round runs every operation the same
number of times, sequentially, one after the other, so a machine busy with other work slows
them alike; the report is each one's median rate and its ratio to the native single publish of
the same run:

- ``native publish``: ``Backplane.publish`` of one event (one JetStream publish);
- ``native 2-event batch``: two events in one call (one atomic batch publish);
- ``stream append``: ``append_stream`` of one event (a read, then an atomic batch of the event
  and the stream's record: ``hub.backplane.nats_streams``);
- ``append with producer``: the same with ``Producer-Id``/``-Epoch``/``-Seq``;
- ``state with touch``: ``stream_state(touch=True)`` of a stream with a sliding TTL (a read; a
  write at most every few seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

if __package__ in (None, ""):  # `python bench/nats_streams.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.nats_store import NatsStore
from hub.backplane import Backplane, open_backplane
from hub.backplane.streams import Producer, Shape, Streams
from hub.config import load
from hub.events import Draft, Event, encode_draft

PER_ROUND = 25


class Quiet:
    """A listener that drops what it is given: only the writes are measured."""

    def deliver(self, events: Sequence[Event]) -> None: ...
    def lost(self, channel: str) -> None: ...
    def deleted(self, channel: str) -> None: ...
    def closed(self, channel: str) -> None: ...


def draft(channel: str) -> Draft:
    return encode_draft(channel, "message", {"token": "x"}, 65536)


async def measure(backplane: Backplane, rounds: int) -> dict[str, list[float]]:
    assert isinstance(backplane, Streams)
    store: Streams = backplane
    await store.create_stream("s", Shape("application/json"), [], False)
    await store.create_stream("t", Shape("application/json", ttl=3600), [], False)
    seq = 0

    async def produce() -> None:
        nonlocal seq
        producer = Producer("p", 0, seq)
        seq += 1
        await store.append_stream(
            "s", [draft("s")], content_type=None, producer=producer, stream_seq=None, close=False
        )

    async def append() -> None:
        await store.append_stream(
            "s", [draft("s")], content_type=None, producer=None, stream_seq=None, close=False
        )

    async def touch() -> None:
        await store.stream_state("t", touch=True)

    operations: dict[str, Callable[[], Awaitable[object]]] = {
        "native publish": lambda: backplane.publish([draft("n")], None),
        "native 2-event batch": lambda: backplane.publish([draft("n"), draft("n")], None),
        "stream append": append,
        "append with producer": produce,
        "state with touch": touch,
    }
    rates: dict[str, list[float]] = {name: [] for name in operations}
    for _ in range(rounds):
        for name, operation in operations.items():
            started = time.perf_counter()
            for _ in range(PER_ROUND):
                await operation()
            rates[name].append(PER_ROUND / (time.perf_counter() - started))
    return rates


async def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="ssehub-bench-") as work:
        store = NatsStore(Path(work))
        store.start()
        try:
            settings = {"backplane": store.url, "nats_stream": "BENCH"}
            backplane = open_backplane(load(path=os.devnull, env={}, overrides=settings))
            await backplane.start(Quiet())
            try:
                rates = await measure(backplane, rounds)
            finally:
                await backplane.close()
        finally:
            store.stop()
    base = statistics.median(rates["native publish"])
    print(f"{'operation':24} {'median/s':>9} {'min':>7} {'max':>7} {'native÷this':>12}")
    for name, found in rates.items():
        median = statistics.median(found)
        print(f"{name:24} {median:9.0f} {min(found):7.0f} {max(found):7.0f} {base / median:12.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    asyncio.run(main(parser.parse_args().rounds))
