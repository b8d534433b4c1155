"""The soak's servers: its own redis-server and the hub processes, killed and restarted at will.

Everything here is started by the soak, on 127.0.0.1 and free ports, and stopped by its pid;
the Redis is never the shared one (it is SIGKILLed mid-run), it keeps its append-only file in
the soak's temporary directory with ``appendfsync always`` (the setting the README asks for:
without it a restart may forget acknowledged events).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis

from bench.servers import SERVERS, Server, free_port

__all__ = ["HubFleet", "RedisServer"]

#: Settings of every soak hub (environment beats bench's config file). History that does not
#: expire during the soak (so a reset can only mean a bug), a small pending limit so the
#: subscribers that never read are cut off early, and room for every subscriber.
HUB_SETTINGS = {
    "HUB_HISTORY_SIZE": "50000",
    "HUB_HISTORY_TTL": "3600",
    "HUB_MAX_PENDING_BYTES": "16384",
    "HUB_MAX_SUBSCRIBERS": "20000",
    "HUB_HEARTBEAT": "5",
    "HUB_LOG_LEVEL": "warning",
}


class RedisServer:
    """A redis-server of the soak's own, restartable on the same port and data directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._spawn()
        client = aioredis.Redis.from_url(self.url)
        try:
            for _ in range(100):
                with contextlib.suppress(aioredis.ConnectionError, OSError):
                    if await client.ping():
                        return
                await asyncio.sleep(0.1)
            raise RuntimeError(f"redis-server on port {self.port} did not answer")
        finally:
            await client.aclose()

    def _spawn(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        log = (self.directory / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port),
             "--dir", str(self.directory), "--appendonly", "yes", "--appendfsync", "always",
             "--save", "", "--maxmemory-policy", "noeviction", "--protected-mode", "yes"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()

    async def restart(self, down: float) -> None:
        """SIGKILL it (no chance to flush anything more), stay down ``down`` s, start again."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
        await asyncio.sleep(down)
        await self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class HubFleet:
    """``count`` hub processes on one backplane; each slot keeps its port across restarts."""

    def __init__(
        self, workdir: Path, count: int, backplane: str, prefix: str, workers: int = 1
    ) -> None:
        env = {**HUB_SETTINGS, "HUB_BACKPLANE": backplane, "HUB_REDIS_PREFIX": prefix}
        env["HUB_WORKERS"] = str(workers)
        self.workers = workers
        self.servers = [
            Server(SERVERS["hub"], free_port(), workdir / f"hub-{i}", cores=None, env=env)
            for i in range(count)
        ]
        self.names = [f"hub-{i}" for i in range(count)]
        self.incarnation = [0] * count

    async def start(self) -> None:
        await asyncio.gather(*(server.start() for server in self.servers))

    def alive(self) -> list[str]:
        return [
            f"http://127.0.0.1:{s.port}"
            for s in self.servers
            if s.proc is not None and s.proc.poll() is None
        ]

    def urls(self) -> list[str]:
        """Every slot's URL, dead or alive (a client tries one and retries when refused)."""
        return [f"http://127.0.0.1:{s.port}" for s in self.servers]

    async def kill_and_restart(self, index: int, down: float) -> None:
        server = self.servers[index]
        if server.proc is not None:
            server.proc.kill()  # SIGKILL: no graceful end of streams, no flush
            server.proc.wait(10)
        await asyncio.sleep(down)
        # keep the killed process's log (start() would truncate it)
        server.log_path.rename(server.log_path.with_suffix(f".{self.incarnation[index]}.log"))
        self.incarnation[index] += 1
        await server.start()

    def rss_kib(self, index: int) -> int:
        server = self.servers[index]
        return server.rss_kib() if server.proc is not None and server.proc.poll() is None else 0

    async def metric(self, session: aiohttp.ClientSession, index: int, name: str) -> float | None:
        url = f"http://127.0.0.1:{self.servers[index].port}/metrics"
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=3)) as response:
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError, OSError):
            return None
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
