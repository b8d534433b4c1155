"""The servers under test: how to start, probe, measure and stop each one.

Every server runs as a subprocess pinned to core 0 by default (the load client takes
core 1; ``bench.scaleout`` pins each of several hub processes to its own core),
listens on 127.0.0.1 only, and is stopped by its pid. CPU and memory are read from
``/proc`` for the whole process tree, because nginx does its work in a forked
worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from bench.loadclient import Api

__all__ = [
    "FLOOR_SOURCE",
    "HUB_COMMAND",
    "HUB_CONFIG",
    "SERVERS",
    "SHIPPED_CONFIG",
    "Server",
    "ServerSpec",
    "build_floor",
    "cpu_seconds",
    "free_port",
    "install_uws",
]

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
PYTHON = str(REPO / ".venv/bin/python") if (REPO / ".venv/bin/python").exists() else sys.executable

#: How to start the hub. ``{python}``, ``{port}`` and ``{config}`` are filled in;
#: adjust this one constant if the hub's command line changes.
HUB_COMMAND = (
    "{python}", "-m", "hub", "serve",
    "--host", "127.0.0.1", "--port", "{port}", "--config", "{config}",
)  # fmt: skip
#: This checkout's hub runs with the repository's config.toml as shipped, nothing turned off:
#: the defaults have no limit per client, so one load client's 15,000 streams and one
#: publisher's full speed are served (issue 20; ``bench.limits`` measures it and the public
#: profile). Only what a run must differ in (a backplane, a prefix) comes as HUB_* settings.
SHIPPED_CONFIG = REPO / "config.toml"
#: Written to the config file of an earlier checkout (``hub-base``, which may not read this
#: one's config.toml): loopback publishes without a token, and room for 15k subscribers.
HUB_CONFIG = """\
publish_tokens = []
max_subscribers = 20000
heartbeat = 15
history_size = 1000
max_pending_bytes = 1048576
"""
#: Added for an earlier hub that has per-client limits on by default (they were, before the
#: profiles): the load client and the publisher are one address each.
HUB_LIMITS_OFF = """\
publish_rate = 0
subscribe_rate = 0
max_client_streams = 0
max_client_channels = 0
"""
NAIVE_COMMAND = (
    "{python}", str(BENCH / "baselines/naive_aiohttp.py"), "--port", "{port}",
)  # fmt: skip
BARE_COMMAND = (
    "{python}", str(BENCH / "baselines/bare_aiohttp.py"), "--port", "{port}",
)  # fmt: skip
NGINX = Path("/usr/sbin/nginx")
NCHAN_MODULE = Path("/usr/lib/nginx/modules/ngx_nchan_module.so")
NCHAN_TEMPLATE = BENCH / "baselines/nchan.conf"
#: The floor (``floor.c``): built with the system's C compiler into a cache named by the
#: source's hash, so an edited source is rebuilt and an unchanged one is not.
FLOOR_SOURCE = BENCH / "floor.c"
FLOOR_CACHE = Path(tempfile.gettempdir()) / "ssehub-bench-cache"
CC = ("gcc", "-O2", "-Wall", "-Wextra")
#: The uWebSockets.js peer: ``uws/server.js``, its npm packages pinned by ``uws/package-lock.json``.
UWS_DIR = BENCH / "uws"

SERVER_CORE = 0
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A port free on 127.0.0.1 right now (the kernel picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class ServerSpec:
    """One kind of server: its publish API dialect and how to address channels."""

    name: str
    api: Api
    baseline: bool
    #: Seconds between SIGTERM and SIGKILL. aiohttp's graceful shutdown waits up
    #: to 60 s for stream handlers, and the naive baseline's are parked in
    #: ``queue.get()`` for clients long gone: there is nothing to wait for.
    stop_grace: float = 5.0
    #: The checkout a hub runs from (this one by default; see ``BASE_ENV``).
    root: Path = REPO
    #: Extra environment of every process of this server (``bench.ab``'s ``--base-env``).
    env: tuple[tuple[str, str], ...] = ()

    def unavailable(self) -> str | None:
        """Why this server cannot run here, or None if it can; builds the floor and
        installs the uws peer's packages first if they are not there yet."""
        if self.name.startswith("hub") and not (self.root / "hub/__main__.py").exists():
            return f"hub not found ({self.root / 'hub/__main__.py'} missing)"
        if self.name == "nchan":
            for needed in (NGINX, NCHAN_MODULE):
                if not needed.exists():
                    return f"{needed} missing: apt-get install nginx-light libnginx-mod-nchan"
        if self.name == "floor":
            return build_floor()[1]
        if self.name == "uws":
            return install_uws()
        return None

    def sub_path(self, channel: str) -> str:
        if self.api == "nchan":
            return f"/sub/{channel}"
        return f"/channels/{channel}/events"

    def command(self, port: int, workdir: Path) -> list[str]:
        if self.name.startswith("hub"):
            config = SHIPPED_CONFIG
            if self.root != REPO:
                config = workdir / "hub.toml"
                text = HUB_CONFIG
                source = (self.root / "hub/config.py").read_text()
                if "publish_rate" in source and "PROFILES" not in source:  # limits on by default
                    text += HUB_LIMITS_OFF
                config.write_text(text)
            fill = {"python": PYTHON, "port": str(port), "config": str(config)}
            return [part.format(**fill) for part in HUB_COMMAND]
        if self.name == "naive":
            return [part.format(python=PYTHON, port=port) for part in NAIVE_COMMAND]
        if self.name == "aiohttp":
            return [part.format(python=PYTHON, port=port) for part in BARE_COMMAND]
        if self.name == "floor":
            binary, error = build_floor()
            if binary is None:
                raise RuntimeError(error)
            return [str(binary), str(port)]
        if self.name == "uws":
            return [shutil.which("node") or "node", str(UWS_DIR / "server.js"), str(port)]
        conf = workdir / "nginx.conf"
        conf.write_text(
            NCHAN_TEMPLATE.read_text()
            .replace("@PORT@", str(port))
            .replace("@PREFIX@", str(workdir))
            .replace("@MODULE@", str(NCHAN_MODULE))
        )
        return [str(NGINX), "-p", str(workdir), "-c", str(conf), "-e",
                str(workdir / "error.log")]  # fmt: skip


SERVERS = {
    "hub": ServerSpec("hub", "hub", baseline=False),
    # the shipped config's ``workers`` at 2, pinned like every server to the one core: each
    # row's hub2÷hub is then the price of coordinating workers (issue 22), not the second core
    "hub2": ServerSpec("hub2", "hub", baseline=False, env=(("HUB_WORKERS", "2"),)),
    "naive": ServerSpec("naive", "hub", baseline=True, stop_grace=0.5),
    "nchan": ServerSpec("nchan", "nchan", baseline=True),
    "uws": ServerSpec("uws", "hub", baseline=True, stop_grace=1.0),
    "floor": ServerSpec("floor", "hub", baseline=True, stop_grace=1.0),
    "aiohttp": ServerSpec("aiohttp", "hub", baseline=True, stop_grace=0.5),
}
#: A checkout of an earlier hub to measure beside this one in the same run, as the target
#: "hub-base" (a baseline: the table shows hub÷hub-base), e.g. after
#: ``git worktree add /tmp/hub-base <commit>``. Both run with this checkout's venv.
BASE_ENV = "SSEHUB_BENCH_BASE"
if os.environ.get(BASE_ENV):
    SERVERS["hub-base"] = ServerSpec(
        "hub-base", "hub", baseline=True, root=Path(os.environ[BASE_ENV]).resolve()
    )


class Server:
    """A running server process (tree) that we started and will stop."""

    def __init__(
        self,
        spec: ServerSpec,
        port: int,
        workdir: Path,
        *,
        cores: Collection[int] | None = (SERVER_CORE,),
        env: Mapping[str, str] | None = None,
    ) -> None:
        """``cores``: the CPUs to pin the process to (None: not pinned); ``env``: extra
        environment, e.g. the hub's ``HUB_*`` settings."""
        self.spec = spec
        self.port = port
        self.workdir = workdir
        self.cores = None if cores is None else frozenset(cores)
        self.env = dict(env or {})
        self.log_path = workdir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self, limit_s: float = 20.0) -> None:
        """Spawn (pinned to ``cores``) and wait until ``GET /healthz`` answers 200."""
        self.spawn()
        assert self.proc is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit_s
        while loop.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.spec.name} exited with {self.proc.returncode}:\n" + self.log_tail()
                )
            if await self._healthy():
                return
            await asyncio.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.spec.name} not healthy after {limit_s}s\n" + self.log_tail())

    def spawn(self) -> None:
        """Start the process (fork + exec: quick, so fine to call from a coroutine)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        cmd = self.spec.command(self.port, self.workdir)
        taskset = shutil.which("taskset")
        if self.cores is not None and taskset:
            cmd = [taskset, "-c", ",".join(map(str, sorted(self.cores))), *cmd]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **dict(self.spec.env), **self.env}
        if self.spec.name == "hub":  # the per-core rows: one process, whatever config.toml
            env.setdefault("HUB_WORKERS", "1")  # says (bench.workers sets 2)
        if self.spec.root != REPO:
            env["PYTHONPATH"] = str(self.spec.root)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                cmd, cwd=self.spec.root, stdout=log, stderr=subprocess.STDOUT, env=env
            )
        if self.cores is not None and not taskset:
            os.sched_setaffinity(self.proc.pid, self.cores)

    async def _healthy(self) -> bool:
        try:
            async with asyncio.timeout(1.0):
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.write(
                    f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                    "Connection: close\r\n\r\n".encode()
                )
                line = await reader.readline()
                writer.close()
                return line.split(b" ")[1:2] == [b"200"]
        except (OSError, TimeoutError, IndexError):
            return False

    def log_tail(self, lines: int = 20) -> str:
        texts = []
        for path in (self.log_path, self.workdir / "error.log"):
            if path.exists():
                texts += path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(texts)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def pids(self) -> list[int]:
        """Our process and its descendants (nginx: master + worker)."""
        found = [self.pid]
        i = 0
        while i < len(found) and i < 64:
            task_dir = Path(f"/proc/{found[i]}/task")
            try:
                for task in task_dir.iterdir():
                    kids = (task / "children").read_text().split()
                    found += [int(k) for k in kids if int(k) not in found]
            except OSError:
                pass
            i += 1
        return found

    def cpu_seconds(self) -> float:
        """utime + stime of the process tree, in seconds (10 ms resolution)."""
        return cpu_seconds(self.pids())

    def rss_kib(self) -> int:
        """Sum of VmRSS over the process tree (nginx's shared memory counts per
        process that touched it; subtract a baseline before comparing)."""
        total = 0
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                continue
        return total

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after the spec's grace; only pids of the tree we
        started."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        tree = [(pid, _cmdline(pid)) for pid in self.pids()]
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.spec.stop_grace
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        for pid, cmdline in tree[1:]:  # e.g. an nginx worker orphaned by SIGKILL
            if cmdline and _cmdline(pid) == cmdline:  # still that process
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def cpu_seconds(pids: Iterable[int]) -> float:
    """utime + stime of these processes (all their threads), in seconds, from
    ``/proc/<pid>/stat`` (10 ms resolution); a pid that is gone counts 0. Works for
    any process we may read, e.g. a Redis server we did not start."""
    ticks = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / CLK_TCK


def build_floor() -> tuple[Path | None, str | None]:
    """(the floor's binary, None), compiled if this source was not yet; or (None, why not)."""
    source = FLOOR_SOURCE.read_bytes()
    binary = FLOOR_CACHE / f"floor-{hashlib.sha256(source).hexdigest()[:16]}"
    if binary.exists():
        return binary, None
    if shutil.which(CC[0]) is None:
        return None, f"{CC[0]} missing: apt-get install gcc"
    FLOOR_CACHE.mkdir(parents=True, exist_ok=True)
    partial = binary.with_name(f"{binary.name}.{os.getpid()}")
    done = subprocess.run(
        [*CC, "-o", str(partial), str(FLOOR_SOURCE)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        return None, f"{' '.join(CC)} {FLOOR_SOURCE} failed:\n{done.stderr}"
    os.replace(partial, binary)  # atomic: a concurrent run sees all of it or none
    return binary, None


def install_uws() -> str | None:
    """None when ``node bench/uws/server.js`` can run (``npm ci`` first if its packages
    are missing or differ from the lock file), else why not."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            return f"{tool} missing: apt-get install nodejs npm"
    npm = ["npm", "--prefix", str(UWS_DIR)]
    ls = subprocess.run([*npm, "ls", "--silent"], capture_output=True, check=False)
    if ls.returncode == 0:
        return None
    done = subprocess.run(
        [*npm, "ci", "--silent", "--no-audit", "--no-fund"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return f"npm ci in {UWS_DIR} failed:\n{done.stderr.strip()}"
    return None


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
