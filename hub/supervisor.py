"""A hub of several workers: ``python -m hub serve`` with ``workers`` > 1 supervises them.

The supervisor serves no HTTP. It runs the engine (``hub.backplane.engine_server``, which the
workers reach over a Unix socket in a private directory): the memory backplane when that is the
backplane, and with every backplane the hub-wide limits and the sums of ``/metrics`` and
``/healthz`` (``hub.backplane.engine_limits``); with Redis or NATS the workers use the store
directly, as separate hub processes would, and the engine serves only that coordination part.
It starts ``workers`` processes of ``python -m hub serve`` with its own arguments
(``hub.worker``), each listening on the same port with ``SO_REUSEPORT``: the kernel spreads new
connections over them.

- **One log stream**: the workers write to the supervisor's stdout and stderr, each line
  tagged with the worker's number; the supervisor logs "listening" once, when every worker
  listens, and "stopped" once, when all have ended.
- **A worker that dies is replaced** (same number). Its subscribers lose their connection; an
  ``EventSource`` reconnects (to any worker) with ``Last-Event-ID`` and resumes exactly from
  the engine's history. A publish it had not answered was stored or not; either way its
  publisher got no acknowledgement of an event that is lost.
- **SIGTERM or SIGINT** is passed to every worker, which drains as a single hub does
  (``shutdown_timeout``); the engine is closed after the last worker ended.
- **A worker that cannot start** (its port taken, a setting it refuses) while the hub starts
  stops the hub with its exit code, rather than being started again and again.
- **The supervisor dying** (even ``kill -9``) ends the workers: the kernel sends each SIGTERM
  (``hub.worker.die_with_supervisor``). The engine holds the history, so its end is the hub's.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Sequence

from hub import worker
from hub.backplane.engine_server import EngineServer
from hub.config import Config
from hub.config_checks import workers_of
from hub.server import loop_factory, loop_name, raise_open_files_limit, start_details

__all__ = ["supervise"]

log = logging.getLogger("hub")

#: Seconds a worker has to listen once started, before the hub gives up on it.
START_TIMEOUT = 30.0
#: Seconds between two replacements of a worker that keeps dying at once (no busy loop).
RESPAWN_PAUSE = 1.0


def supervise(config: Config, argv: Sequence[str]) -> int:
    """Run the hub as ``workers`` processes until SIGTERM/SIGINT; the exit code."""
    raise_open_files_limit()  # the workers inherit it
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(Supervisor(config, argv).run())


class _Worker:
    def __init__(
        self, number: int, process: asyncio.subprocess.Process, ready: asyncio.Future[bool]
    ):
        self.number = number
        self.process = process
        self.ready = ready  # True once it listens; False when it ended before
        self.started = time.monotonic()


class Supervisor:
    def __init__(self, config: Config, argv: Sequence[str]) -> None:
        self._config = config
        self._argv = list(argv)
        self._count = workers_of(config.workers)
        self._workers: dict[int, _Worker] = {}
        self._stopping = False
        self._dir = _private_dir()
        self._engine: EngineServer | None = None
        self._port = config.port

    async def run(self) -> int:
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        holder = None
        try:
            holder = self._reserve()
            path = (
                os.path.join(self._dir, "engine.sock")
                if self._dir
                else f"@ssehub-engine-{os.getpid()}-{secrets.token_hex(8)}"
            )
            store = self._config.backplane == "memory"  # else: coordination only
            self._engine = EngineServer(self._config, path, store=store)
            await self._engine.start()
            for number in range(1, self._count + 1):
                await self._spawn(number)
            code = await self._all_ready()
            if code is not None:
                return code
            self._log_start(started)
            await self._watch(stop)
            return 0
        finally:
            await self._stop_all()
            if holder is not None:
                holder.close()
            if self._engine is not None:
                await self._engine.close()
            if self._dir:
                shutil.rmtree(self._dir, ignore_errors=True)

    def _reserve(self) -> socket.socket | None:
        """Refuse a port another process listens on (as a single hub does: the workers' own
        ``SO_REUSEPORT`` would not), and with ``port = 0`` choose the one all workers share."""
        host, port = self._config.host, self._config.port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        probe = socket.socket(family, socket.SOCK_STREAM)
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
            probe.listen(1)
        except OSError as problem:
            probe.close()
            hint = " (another process, maybe another hub, listens there)"
            hint = hint if problem.errno == errno.EADDRINUSE else ""
            reason = os.strerror(problem.errno) if problem.errno else str(problem)
            raise SystemExit(f"ssehub: cannot listen on {where}: {reason}{hint}") from None
        probe.close()
        if port:
            return None
        holder = socket.socket(family, socket.SOCK_STREAM)  # bound, never listening: a name
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind((host, 0))
        self._port = holder.getsockname()[1]
        return holder

    async def _spawn(self, number: int) -> None:
        read, write = os.pipe()
        env = dict(os.environ)
        env.update({
            worker.NUMBER_ENV: str(number),
            worker.COUNT_ENV: str(self._count),
            worker.PORT_ENV: str(self._port),
            worker.SUPERVISOR_ENV: str(os.getpid()),
            worker.READY_ENV: str(write),
        })  # fmt: skip
        if self._engine is not None:
            env[worker.ENGINE_ENV] = self._engine.path
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "hub", *self._argv,
                env=env, stdin=asyncio.subprocess.DEVNULL, pass_fds=(write,),
            )  # fmt: skip
        finally:
            os.close(write)
        ready = asyncio.ensure_future(_read_ready(read))
        self._workers[number] = _Worker(number, process, ready)

    async def _all_ready(self) -> int | None:
        """None once every worker listens; else the exit code of one that could not start."""
        try:
            async with asyncio.timeout(START_TIMEOUT):
                for one in list(self._workers.values()):
                    if not await one.ready:
                        code = await one.process.wait()
                        log.error(
                            "ssehub: worker %d could not start (exit code %d)", one.number, code
                        )
                        return code or 1
        except TimeoutError:
            log.error("ssehub: the workers did not all listen within %.0fs", START_TIMEOUT)
            return 1
        return None

    def _log_start(self, started: float) -> None:
        host = self._config.host
        where = f"[{host}]:{self._port}" if ":" in host else f"{host}:{self._port}"
        pids = " ".join(str(one.process.pid) for one in self._workers.values())
        engine = (
            "; memory history in the engine (this process)"
            if self._config.backplane == "memory"
            else "; hub-wide limits in this process"
        )
        details = start_details(self._config, loop_name(asyncio.get_running_loop()))
        log.info(
            "ssehub listening on http://%s (workers: %d, pids %s%s; %s; ready in %.2fs)",
            where, self._count, pids, engine, details, time.monotonic() - started,
            extra={"event": "start", "host": host, "port": self._port, "workers": self._count},
        )  # fmt: skip

    async def _watch(self, stop: asyncio.Event) -> None:
        """Until ``stop``: replace every worker that ends."""
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while True:
                exits = {
                    asyncio.ensure_future(one.process.wait()): one for one in self._workers.values()
                }
                done, _ = await asyncio.wait(
                    [stopping, *exits], return_when=asyncio.FIRST_COMPLETED
                )
                for waiter in exits:
                    if waiter not in done:
                        waiter.cancel()
                if stopping in done:
                    return
                for waiter in done:
                    await self._replace(exits[waiter], waiter.result())
        finally:
            stopping.cancel()

    async def _replace(self, gone: _Worker, code: int) -> None:
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        log.warning(
            "ssehub: worker %d (pid %d) ended (%s); starting another",
            gone.number, gone.process.pid, how,
            extra={"event": "worker-ended", "worker": gone.number, "code": code},
        )  # fmt: skip
        if time.monotonic() - gone.started < RESPAWN_PAUSE:
            await asyncio.sleep(RESPAWN_PAUSE)
        await self._spawn(gone.number)

    async def _stop_all(self) -> None:
        """SIGTERM to every worker; each drains (``shutdown_timeout``), then SIGKILL."""
        self._stopping = True
        stopping = time.monotonic()
        workers = [one for one in self._workers.values() if one.process.returncode is None]
        for one in workers:
            with contextlib.suppress(ProcessLookupError):
                one.process.send_signal(signal.SIGTERM)
        grace = self._config.shutdown_timeout + 10.0
        for one in workers:
            try:
                async with asyncio.timeout(max(0.1, grace - (time.monotonic() - stopping))):
                    await one.process.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    one.process.kill()
                await one.process.wait()
        for one in self._workers.values():
            one.ready.cancel()
        if workers:
            log.info(
                "ssehub stopped (workers: %d) in %.2fs",
                len(workers), time.monotonic() - stopping,
                extra={"event": "stop"},
            )  # fmt: skip


def _private_dir() -> str | None:
    """A directory of our own (mode 0700) for the engine's socket: under TMPDIR, else /dev/shm
    (a tmpfs even in a read-only container); None when neither can be written, and the socket
    gets a name in Linux's abstract namespace instead (``@...``: no file, but reachable by
    anyone in the same network namespace, which a read-only container has to itself)."""
    for where in (None, "/dev/shm"):
        try:
            return tempfile.mkdtemp(prefix="ssehub-", dir=where)
        except OSError:
            continue
    log.warning("ssehub: no writable TMPDIR or /dev/shm: the engine listens on an abstract socket")
    return None


async def _read_ready(fd: int) -> bool:
    """Whether the worker wrote its byte (it listens) before its end of the pipe closed."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    pipe = os.fdopen(fd, "rb", buffering=0)
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    try:
        return await reader.read(1) == b"1"
    finally:
        transport.close()
