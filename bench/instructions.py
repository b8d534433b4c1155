"""Instructions per single publish, counted by callgrind: a figure other work on the machine
does not move.

    .venv/bin/python -m bench.instructions                          # hub and bare aiohttp
    .venv/bin/python -m bench.instructions --base main              # + main's hub, same run
    .venv/bin/python -m bench.instructions --subscribers 10         # 10 streams on the channel

On a shared 2-core machine the CPU per publish read from ``/proc`` (``bench.run``'s row
``publish single, 8 conns: server CPU us/publish``) moves by tens of percent with what else
runs; the instructions a server executes per request do not. Each server runs under
``valgrind --tool=callgrind`` with collection off; after a warm-up, collection is switched on
for ``--seconds`` of ``wrk -t1 -c1`` publishing (one connection: one request per loop pass, so
how requests batch, which does move with the load, does not change the figure) and the total is
divided by the requests wrk made. Subscribers, if any, are ``curl -N`` streams on the channel,
so a publish's figure then includes its deliveries (their ``send()`` in the kernel is not
counted: callgrind sees user space only). Runs of one tree agree within ~1-2 %.

Instructions are not time (the C servers of ``bench.run`` would look better per instruction than
they are per µs), so compare the Python servers with each other: the hub and the bare aiohttp
handler (``bench/baselines/bare_aiohttp.py``), each in the same way.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

if __package__ in (None, ""):  # `python bench/instructions.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.servers import BARE_COMMAND, HUB_COMMAND, PYTHON, REPO, free_port
from bench.wrk import WRK, parse, script

__all__ = ["main"]


def _command(kind: str, root: Path, port: int) -> list[str]:
    parts = BARE_COMMAND if kind == "aiohttp" else HUB_COMMAND
    config = str(root / "config.toml")
    bare = str(root / "bench/baselines/bare_aiohttp.py")
    filled = [p.format(python=PYTHON, port=port, config=config) for p in parts]
    return [bare if p.endswith("bare_aiohttp.py") else p for p in filled]


def _healthy(port: int, limit_s: float = 120.0) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"no answer on port {port} after {limit_s:g} s")


def _wrk(port: int, seconds: int, lua: Path) -> int:
    assert WRK is not None
    url = f"http://127.0.0.1:{port}/"
    out = subprocess.run(
        # --timeout: a server under callgrind on a busy machine can take seconds for one
        # request; wrk's 2 s default would call that an error, though the count is unchanged
        [WRK, "-t1", "-c1", f"-d{seconds}s", "--timeout", "30s", "-s", str(lua), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = parse(out)
    if found["non_2xx"] or found["socket_errors"]:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    return int(found["requests"])


def measure(kind: str, root: Path, seconds: int, subscribers: int, work: Path) -> float:
    """Instructions per publish of one server (``hub`` or ``aiohttp``) from ``root``."""
    port = free_port()
    out = work / f"{kind}-{root.name}-{port}.cg"
    lua = work / "publish.lua"
    lua.write_text(script("hub", "news"))
    # Nothing else of this environment (no HUB_* or SSEHUB_* setting of the caller's).
    env = {"HUB_WORKERS": "1", "PYTHONPATH": str(root), "PATH": os.environ.get("PATH", "")}
    callgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
    server = subprocess.Popen(
        [*callgrind, f"--callgrind-out-file={out}", *_command(kind, root, port)],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    streams: list[subprocess.Popen[bytes]] = []
    try:
        _healthy(port)
        url = f"http://127.0.0.1:{port}/channels/news/events"
        for _ in range(subscribers):
            streams.append(subprocess.Popen(["curl", "-s", "-N", "-o", "/dev/null", url]))
        _wrk(port, 2, lua)  # warm-up, not counted
        control = ["callgrind_control", "-i"]
        subprocess.run([*control, "on", str(server.pid)], capture_output=True, check=True)
        requests = _wrk(port, seconds, lua)
        subprocess.run([*control, "off", str(server.pid)], capture_output=True, check=True)
        subprocess.run(["callgrind_control", "-d", str(server.pid)], capture_output=True)
    finally:
        for stream in streams:
            stream.terminate()
        server.terminate()
        server.wait(30)
    dump = Path(f"{out}.1")
    text = subprocess.run(["callgrind_annotate", str(dump)], capture_output=True, text=True)
    total = re.search(r"^([\d,]+) .*PROGRAM TOTALS", text.stdout, re.MULTILINE)
    if total is None:
        raise RuntimeError(f"no totals in {dump}")
    return int(total.group(1).replace(",", "")) / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="a git revision of this repository: its hub as well")
    parser.add_argument("--seconds", type=int, default=6, help="counted wrk window (6)")
    parser.add_argument("--subscribers", type=int, default=0, help="streams on the channel (0)")
    args = parser.parse_args()
    for tool in ("valgrind", "callgrind_control", "callgrind_annotate", "curl"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found (apt-get install valgrind curl)")
    if WRK is None:
        sys.exit("wrk not found (apt-get install wrk)")
    with tempfile.TemporaryDirectory(prefix="ssehub-instructions-") as tmp:
        work = Path(tmp)
        runs = [("aiohttp", REPO, "aiohttp"), ("hub", REPO, "hub")]
        if args.base:
            base = work / "base"
            base.mkdir()
            archive = subprocess.run(
                ["git", "-C", str(REPO), "archive", args.base], capture_output=True, check=True
            )
            subprocess.run(["tar", "-x", "-C", str(base)], input=archive.stdout, check=True)
            runs.append(("hub", base, f"hub {args.base}"))
        figures = {}
        for kind, root, label in runs:
            figures[label] = measure(kind, root, args.seconds, args.subscribers, work)
            print(f"{label}: {figures[label]:,.0f} instructions per publish", flush=True)
        floor = figures["aiohttp"]
        for label, value in figures.items():
            print(f"{label:>20}: {value:>10,.0f}  ÷aiohttp {value / floor:.3f}")


if __name__ == "__main__":
    main()
