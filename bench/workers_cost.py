"""Where the price of ``workers`` goes, per publish: instructions, CPU, syscalls, switches.

    python -m bench.workers_cost                      # CPU and switches, 1 and 2 workers
    python -m bench.workers_cost --callgrind          # + instructions (valgrind), ~5 min
    python -m bench.workers_cost --subs 1000 --channels 64 --rate 500   # "small"
    python -m bench.workers_cost --strace             # + syscalls per publish, per process
    python -m bench.workers_cost --root /work/main    # another checkout's hub (A/B)
    python -m bench.workers_cost --callgrind --keep /tmp/cg   # keep the dumps: callgrind_annotate

``bench.workers`` gives the CPU ratio on a busy machine; this says what it is made of, per
process of the hub (1 worker: the one process; 2 workers: the supervisor's engine and each
worker), over ``-n`` single publishes on one keep-alive connection (sequential, or paced at
``--rate``), with ``--subs`` raw-socket subscribers when asked. Everything pinned to core 0
(the client here on core 1), as ``bench.workers``'s price is.

- CPU user and system, and voluntary and involuntary context switches, from ``/proc``;
- ``--callgrind``: instructions executed (valgrind's callgrind, counters zeroed after the
  warm-up and dumped after the window), less those of the same wall time without a publish
  (``timers``: the hub's per-second work, which a slower run pays more of): the one figure
  that other processes' load does not move. Python under valgrind starts ~50x slower than
  the supervisor's start timeout allows, so the hub runs from a copy of this checkout's
  ``hub/`` with ``START_TIMEOUT`` raised;
- ``--calls N``: Python and C calls per publish (``sys.setprofile`` in each process, the N
  most made shown): where the instructions go, which callgrind cannot say of Python code;
- ``--strace``: syscalls per publish (``strace -c`` attached to each process for the window).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/workers_cost.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.servers import PYTHON, REPO, free_port

__all__ = ["main"]

TICK = os.sysconf("SC_CLK_TCK")


#: ``--calls``: a ``sitecustomize`` in the hub's copy; SIGUSR1 starts counting every Python
#: and C call of the process (``sys.setprofile``), SIGUSR2 writes the counts to calls.PID.
_CALLS = """
import collections, json, os, signal, sys
_counts = collections.Counter()
def _count(frame, event, arg):
    if event == "call":
        code = frame.f_code
        _counts[f"{code.co_filename.rsplit('/', 2)[-1]}:{code.co_qualname}"] += 1
    elif event == "c_call":
        _counts[f"C {getattr(arg, '__qualname__', arg)}"] += 1
def _start(*_):
    _counts.clear()
    sys.setprofile(_count)
def _stop(*_):
    sys.setprofile(None)
    with open(os.path.join(os.environ["CALLS_DIR"], f"calls.{os.getpid()}"), "w") as out:
        json.dump(_counts.most_common(), out)
signal.signal(signal.SIGUSR1, _start)
signal.signal(signal.SIGUSR2, _stop)
"""


def _hub_root(checkout: Path, args: argparse.Namespace, tmp: Path) -> Path:
    if not (args.callgrind or args.calls):
        return checkout
    root = tmp / "root"
    shutil.copytree(checkout / "hub", root / "hub")
    shutil.copy(checkout / "config.toml", root / "config.toml")
    if args.calls:
        (root / "sitecustomize.py").write_text(_CALLS)
    supervisor = root / "hub/supervisor.py"
    text = re.sub(
        r"^START_TIMEOUT = .*$", "START_TIMEOUT = 900.0", supervisor.read_text(), flags=re.M
    )
    supervisor.write_text(text)
    return root


class Client:
    """One keep-alive publisher, and subscribers read by a thread (counting ``id:`` lines)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = socket.create_connection(("127.0.0.1", port))
        self.conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        self.received = 0
        self.stopping = False

    def publish(self, channel: str, n: int) -> None:
        body = json.dumps({"event": "tick", "data": {"s": n, "t": time.time_ns()}}).encode()
        self.conn.sendall(
            f"POST /channels/{channel}/events HTTP/1.1\r\nHost: x\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        while True:
            head, found, rest = self.buffer.partition(b"\r\n\r\n")
            if found:
                length = int(re.search(rb"(?i)content-length: (\d+)", head)[1])  # type: ignore[index]
                if len(rest) >= length:
                    assert head.startswith(b"HTTP/1.1 202"), head
                    self.buffer = rest[length:]
                    return
            self.buffer += self.conn.recv(65536)

    def subscribe(self, count: int, channels: int) -> None:
        sockets = []
        for n in range(count):
            sub = socket.create_connection(("127.0.0.1", self.port))
            sub.sendall(
                f"GET /channels/c{n % channels}/events HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            )
            sub.setblocking(False)
            sockets.append(sub)
        threading.Thread(target=self._read, args=(sockets,), daemon=True).start()

    def _read(self, sockets: list[socket.socket]) -> None:
        chosen = selectors.DefaultSelector()
        for sub in sockets:
            chosen.register(sub, selectors.EVENT_READ)
        while not self.stopping:
            for key, _ in chosen.select(0.2):
                data = key.fileobj.recv(1 << 20)  # type: ignore[union-attr]
                self.received += data.count(b"\nid: ") + data.startswith(b"id: ")


def _proc(pid: int) -> dict[str, float]:
    """CPU (s) and context switches of one process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    found = {"user": int(fields[11]) / TICK, "sys": int(fields[12]) / TICK}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("voluntary_ctxt", "nonvoluntary_ctxt")):
            found[line.split("_")[0]] = int(line.split(":")[1])
    return found


def _wait_ready(port: int, proc: subprocess.Popen[bytes], limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as probe:
                probe.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if probe.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the hub did not get ready (exit code {proc.poll()})")


def _wait_subscribed(port: int, subs: int, limit_s: float) -> None:
    """Until the hub counts every subscriber (``/healthz``: the whole hub's): under valgrind a
    thousand subscribes take minutes, and one still served in the window is counted in it."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        answer = b""
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=limit_s / 3) as probe:
                probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                while chunk := probe.recv(65536):
                    answer += chunk
        except OSError:  # a hub under valgrind, busy with a thousand subscribes: ask again
            continue
        found = re.search(rb'"subscribers":\s*(\d+)', answer)
        if found and int(found[1]) >= subs:
            return
        time.sleep(1)
    raise SystemExit(f"the hub did not count {subs} subscribers in {limit_s} s")


def measure(workers: int, args: argparse.Namespace, root: Path, tmp: Path) -> dict[str, Any]:
    out = tmp / f"w{workers}"
    out.mkdir()
    port = free_port()
    command = [PYTHON, "-m", "hub", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--config", str(root / "config.toml")]  # fmt: skip
    if args.callgrind:
        command = ["valgrind", "--tool=callgrind", "--trace-children=yes",
                   f"--callgrind-out-file={out}/cg.%p", *command]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(root), HUB_WORKERS=str(workers), HUB_LOG_LEVEL="warning")
    env["CALLS_DIR"] = str(out)
    if args.callgrind:  # no heartbeat pass in the window: over 1,000 streams one is a burst
        env["HUB_HEARTBEAT"] = "600"  # that the timers' subtraction would leave as noise
    proc = subprocess.Popen(["taskset", "-c", str(args.core), *command], cwd=root, env=env,
                            stdout=(out / "log").open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    try:
        _wait_ready(port, proc, 900 if args.callgrind else 60)
        settle = 10 if args.callgrind else 1
        time.sleep(settle)
        client = Client(port)
        if args.subs:
            client.subscribe(args.subs, args.channels)
            _wait_subscribed(port, args.subs, 900 if args.callgrind else 60)
            time.sleep(settle + 2)
        for n in range(args.warm):
            client.publish(f"c{n % args.channels}", n)
        pids = [int(p) for p in subprocess.check_output(["pgrep", "-s", str(proc.pid)]).split()]
        tracers = _start_tracers(pids, args, out)
        before = {pid: _proc(pid) for pid in pids}
        start = time.monotonic()
        for n in range(args.n):
            if args.rate and (wait := start + n / args.rate - time.monotonic()) > 0:
                time.sleep(wait)
            client.publish(f"c{n % args.channels}", args.warm + n)
        time.sleep(0.5 if args.subs else 0)
        after = {pid: _proc(pid) for pid in pids}
        _stop_tracers(tracers, pids, args)
        if args.callgrind:  # the same wall time again, no publish: what the timers cost
            _background(pids, time.monotonic() - start)
        client.stopping = True
        return _figures(pids, before, after, args, out)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _start_tracers(pids: list[int], args: argparse.Namespace, out: Path) -> list[Any]:
    tracers = []
    if args.strace:
        for pid in pids:
            command = ["strace", "-c", "-o", f"{out}/strace.{pid}", "-p", str(pid)]
            tracers.append(subprocess.Popen(command, stderr=subprocess.DEVNULL))
        time.sleep(2)
    if args.callgrind:
        for pid in pids:
            subprocess.run(["callgrind_control", "-z", str(pid)], capture_output=True, check=False)
    if args.calls:
        for pid in pids:
            os.kill(pid, signal.SIGUSR1)
    return tracers


def _stop_tracers(tracers: list[Any], pids: list[int], args: argparse.Namespace) -> None:
    for tracer in tracers:
        tracer.send_signal(signal.SIGINT)
        tracer.wait()
    if args.callgrind:
        for pid in pids:
            subprocess.run(["callgrind_control", "-d", str(pid)], capture_output=True, check=False)
        time.sleep(2)
    if args.calls:
        for pid in pids:
            os.kill(pid, signal.SIGUSR2)
        time.sleep(1)


def _background(pids: list[int], seconds: float) -> None:
    """A second dump (``cg.PID.2``) over ``seconds`` without a publish: the instructions of the
    hub's timers (reports to the engine every second, counts, heartbeats), which run per second
    of wall time, and a hub under valgrind takes more seconds per publish the busier the
    machine is. Subtracted, the figure per publish no longer moves with the load."""
    for pid in pids:
        subprocess.run(["callgrind_control", "-z", str(pid)], capture_output=True, check=False)
    time.sleep(seconds)
    for pid in pids:
        subprocess.run(["callgrind_control", "-d", str(pid)], capture_output=True, check=False)
    time.sleep(2)


def _figures(pids: list[int], before: dict[int, Any], after: dict[int, Any],
             args: argparse.Namespace, out: Path) -> dict[str, Any]:  # fmt: skip
    n = args.n
    per: dict[str, Any] = {}
    for pid in pids:
        scale = {"user": 1e6, "sys": 1e6}  # seconds to us; switches as they are
        one = {key: round((after[pid][key] - before[pid][key]) * scale.get(key, 1) / n, 2)
               for key in after[pid]}  # fmt: skip
        if args.callgrind and (dump := out / f"cg.{pid}.1").exists():
            total = _summary(dump)
            idle = _summary(out / f"cg.{pid}.2")
            one["instructions"] = round((total - idle) / n)
            one["timers"] = round(idle / n)  # subtracted: see _background
        if args.strace and (trace := out / f"strace.{pid}").exists():
            calls = re.findall(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$",
                               trace.read_text(), re.M)  # fmt: skip
            one["syscalls"] = {name: round(int(count) / n, 2) for count, name in calls}
        if args.calls and (counted := out / f"calls.{pid}").exists():
            top = json.loads(counted.read_text())
            one["calls"] = round(sum(count for _, count in top) / n, 1)
            one["calls_top"] = {name: round(count / n, 2) for name, count in top[: args.calls]}
        per[str(pid)] = one
    return per


def _summary(dump: Path) -> int:
    found = re.search(r"^summary: (\d+)", dump.read_text(), re.M) if dump.exists() else None
    return int(found[1]) if found else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.workers_cost")
    parser.add_argument("-n", type=int, default=3000, help="publishes measured")
    parser.add_argument("--warm", type=int, default=200)
    parser.add_argument("--rate", type=float, default=0.0, help="publishes/s (0: sequential)")
    parser.add_argument("--subs", type=int, default=0)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--callgrind", action="store_true")
    parser.add_argument("--strace", action="store_true")
    parser.add_argument(
        "--calls", type=int, default=0, help="count Python and C calls; show the N most made"
    )
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--root", default=str(REPO), help="the checkout whose hub runs (A/B)")
    parser.add_argument(
        "--keep", default="", help="copy the dumps and logs here (for callgrind_annotate)"
    )
    parser.add_argument(
        "--core", type=int, default=0, help="the hub's core (the client: the other)"
    )
    args = parser.parse_args(argv)
    if args.callgrind:
        args.n = min(args.n, 500)
    os.sched_setaffinity(0, {1 - args.core})
    with tempfile.TemporaryDirectory(prefix="ssehub-workers-cost-") as tmp:
        root = _hub_root(Path(args.root).resolve(), args, Path(tmp))
        for workers in (int(w) for w in args.workers.split(",")):
            figures = measure(workers, args, root, Path(tmp))
            keys = ("user", "sys", "voluntary", "nonvoluntary", "instructions", "timers")
            total = {key: round(sum(p.get(key) or 0 for p in figures.values()), 2) for key in keys}
            print(json.dumps({"workers": workers, "per_publish": total, "per_process": figures}))
        if args.keep:
            shutil.copytree(
                tmp, args.keep, dirs_exist_ok=True, ignore=shutil.ignore_patterns("root")
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
