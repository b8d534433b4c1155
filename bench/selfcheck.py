"""Self-check of the load client: run by hand, not part of the test suite.

    python -m bench.selfcheck            # parser checks + live checks
    python -m bench.selfcheck --offline  # parser checks only

1. Offline: byte streams with LF, CR and CRLF line ends, comments, multi-line
   data, chunked and raw bodies, fed to ``SseSubscriber`` cut at random places;
   the missing/duplicated/reordered counts must come out exactly.
2. Live: 100 subscribers against each server that runs here (naive baseline,
   nchan, hub), a few events single and batched, one and several channels:
   zero loss and every expected delivery.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson

from bench.loadclient import Histogram, SseSubscriber, SubscriberPool, install_uvloop
from bench.run import Plan, rate_scenario
from bench.servers import SERVERS, Server, free_port

__all__ = ["main"]


def _frame(seq: int, eol: str, *, channel: int = 0, multiline: bool = False) -> str:
    data = orjson.dumps({"c": channel, "s": seq, "t": 1}).decode()
    if multiline:  # split the JSON over two data lines; joined with LF it still parses
        cut = data.index(",") + 1
        lines = [f"data: {data[:cut]}", f"data:{data[cut:]}"]
    else:
        lines = [f"data: {data}"]
    return eol.join([f"id: {seq}:c", "event: tick", *lines]) + eol + eol


def _chunked(body: bytes, rng: random.Random) -> bytes:
    out = b""
    pos = 0
    while pos < len(body):
        n = rng.randint(1, 40)
        ext = b";x=1" if rng.random() < 0.1 else b""
        out += f"{n if pos + n <= len(body) else len(body) - pos:x}".encode() + ext
        out += b"\r\n" + body[pos : pos + n] + b"\r\n"
        pos += n
    return out


async def offline_checks(rounds: int = 200) -> None:
    rng = random.Random(7)
    seqs = [0, 1, 2, 4, 3, 5, 5, 7, 8, 9]  # 3 reordered, one dup 5, 6 missing
    published = [11]  # 10 never arrives either → missing = 2
    for eol in ("\n", "\r", "\r\n"):
        for chunked in (True, False):
            for round_no in range(rounds):
                # round 0: one read per frame, as servers write (the fast path);
                # later rounds: reads cut anywhere, including inside CRLFs.
                frames = [f"retry: 3000{eol}{eol}", f": hello{eol}{eol}"]
                for i, s in enumerate(seqs):
                    frames.append(_frame(s, eol, multiline=i % 3 == 0))
                    if i == 4:
                        frames.append(f": heartbeat{eol}{eol}{eol}")  # extra blank
                head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                head += b"Transfer-Encoding: chunked\r\n\r\n" if chunked else b"\r\n"
                pool = SubscriberPool("127.0.0.1", 0)
                sub = SseSubscriber(pool, b"", (0,))
                if round_no == 0:
                    sub.data_received(head)
                    for frame in frames:
                        raw = frame.encode()
                        sub.data_received(b"%x\r\n%s\r\n" % (len(raw), raw) if chunked else raw)
                else:
                    body = "".join(frames).encode()
                    stream = head + (_chunked(body, rng) if chunked else body)
                    pos = 0
                    while pos < len(stream):
                        n = rng.choice((1, 2, 3, 7, 64, 1000))
                        sub.data_received(stream[pos : pos + n])
                        pos += n
                got = (sub.events, sub.dup, sub.reordered, sub.missing(published))
                want = (len(seqs), 1, 1, 2)
                assert got == want, f"eol={eol!r} chunked={chunked}: {got} != {want}"
                assert sub.bad == 0 and sub.foreign == 0 and sub.ready.result()
    # a channel this subscriber did not ask for is counted, not tracked
    pool = SubscriberPool("127.0.0.1", 0)
    sub = SseSubscriber(pool, b"", (1,))
    sub.data_received(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n")
    sub.data_received(_frame(0, "\n", channel=2).encode())
    assert sub.foreign == 1 and not sub.next
    # non-200 answers fail the subscriber
    pool = SubscriberPool("127.0.0.1", 0)
    sub = SseSubscriber(pool, b"", (0,))
    sub.data_received(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n")
    assert sub.ready.result() is False and sub.status == 503
    hist = Histogram()
    for us in range(1, 100_001):
        hist.record_us(float(us))
    for q, exact in ((0.5, 50_000), (0.99, 99_000)):
        assert abs(hist.percentile_us(q) / exact - 1) < 0.01, (q, hist.percentile_us(q))
    print("offline parser checks: ok (LF/CR/CRLF line ends, chunked/raw, random cuts)")


async def live_checks(targets: Sequence[str], workdir: Path) -> bool:
    plan = Plan(warmup=0.5, duration=1.5)
    subs = 100
    cases = [  # label, channels, events/s, events per publish
        ("single channel", 1, 40.0, 1),
        ("batches of 10", 1, 100.0, 10),
        ("10 channels", 10, 50.0, 1),
    ]
    ok = True
    for name in targets:
        spec = SERVERS[name]
        if reason := spec.unavailable():
            print(f"{name}: skipped ({reason})")
            continue
        for label, channels, rate, batch in cases:
            server = Server(spec, free_port(), workdir / name / label.replace(" ", "-"))
            try:
                await server.start()
                r = await rate_scenario(
                    server, plan, tag="check", subs=subs, channels=channels, rate=rate, batch=batch
                )
            finally:
                server.stop()
            pool = r["pool"]
            good = (
                r["loss"] == 0
                and pool["connected"] == subs
                and pool["delivered"] == pool["expected"] > 0
                and r["publisher"]["failed_requests"] == 0
                and pool["bad"] == 0
            )
            ok &= good
            print(
                f"{name:6} {label:15} {'ok  ' if good else 'FAIL'} "
                f"delivered {pool['delivered']}/{pool['expected']} "
                f"missing {pool['missing']} dup {pool['duplicated']} "
                f"reordered {pool['reordered']} p99 {r['p99_ms']} ms"
            )
    return ok


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.selfcheck")
    parser.add_argument("--offline", action="store_true")
    parser.add_argument("--targets", default="naive,nchan,hub")
    args = parser.parse_args(argv)
    install_uvloop()
    asyncio.run(offline_checks())
    if args.offline:
        return 0
    import tempfile

    with tempfile.TemporaryDirectory(prefix="ssehub-selfcheck-") as tmp:
        ok = asyncio.run(live_checks(args.targets.split(","), Path(tmp)))
    print("live checks:", "ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
