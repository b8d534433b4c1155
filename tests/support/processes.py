"""Real ``python -m hub serve`` processes, as a user starts them, for tests that need the CLI or
several hubs. Each is started on 127.0.0.1 and ended by its own pid."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import re
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LISTENING_RE = re.compile(r"listening on http://(?P<host>[0-9.]+):(?P<port>[0-9]+)")
_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded before any fork: the child only calls it
_PR_SET_PDEATHSIG = 1


def dies_with_us() -> None:
    """``preexec_fn`` of every process a test starts (hubs, Redis, NATS, nginx, node): the kernel
    sends it SIGTERM when the test process ends, however it ends. A pytest that is killed runs
    no fixture teardown, and its servers would otherwise go on running after it."""
    if sys.platform == "linux":
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment minus any HUB_*/SSEHUB_* settings of the caller, importing this checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "SSEHUB_"))}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


async def run_to_end(
    *command: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 20.0
) -> tuple[int, str, str]:
    """Run a command to completion (killed past ``timeout``); returns (code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=dies_with_us,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


class HubProcess:
    """A ``python -m hub serve`` process and the lines it logged (stdout; stderr kept apart)."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self.errors: list[str] = []
        self.port = 0
        self._readers: list[asyncio.Task[None]] = []

    @classmethod
    async def spawn(
        cls, *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT
    ) -> HubProcess:
        """Start it; ``started()`` waits until it listens. ``env`` adds HUB_* settings."""
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hub", "serve", *args,
            cwd=cwd,
            env=clean_env(**(env or {})),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=dies_with_us,
        )  # fmt: skip
        return cls(process)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def output(self) -> str:
        return "".join(self.lines + self.errors)

    async def started(self, timeout: float = 30.0) -> HubProcess:
        """Wait for the start line; then keep reading both streams in the background.

        ``timeout`` only tells a hub that never starts from a slow one: three hubs of the
        shipped config (two workers each, so nine Python processes importing aiohttp at once)
        took over 15 s on a 2-core machine under a load of 13, and failed tests that prove
        nothing about start-up time."""
        stdout, stderr = self.process.stdout, self.process.stderr
        assert stdout is not None and stderr is not None
        self._readers.append(asyncio.create_task(self._read(stderr, self.errors)))
        async with asyncio.timeout(timeout):
            while True:
                line = (await stdout.readline()).decode()
                if not line:
                    await asyncio.gather(*self._readers)
                    raise AssertionError(f"the hub exited before listening:\n{self.output}")
                self.lines.append(line)
                match = LISTENING_RE.search(line)
                if match:
                    assert match["host"] == "127.0.0.1"
                    self.port = int(match["port"])
                    break
        self._readers.append(asyncio.create_task(self._read(stdout, self.lines)))
        return self

    @staticmethod
    async def _read(stream: asyncio.StreamReader, into: list[str]) -> None:
        while line := await stream.readline():
            into.append(line.decode())

    def signal(self, signum: int) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signum)

    async def wait(self, timeout: float) -> int:
        async with asyncio.timeout(timeout):
            code = await self.process.wait()
            await asyncio.gather(*self._readers)
        return code

    async def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it is still there after ``grace`` seconds; safe twice."""
        self.signal(signal.SIGTERM)
        try:
            await self.wait(grace)
        except TimeoutError:
            await self.end()

    async def end(self) -> None:
        """Kill it if it still runs, and reap it."""
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        for reader in self._readers:
            reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._readers, return_exceptions=True)
