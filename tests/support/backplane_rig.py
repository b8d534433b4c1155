"""Helpers for tests/backplane/test_backplane.py: a recording listener, backplanes built from
settings, and a private redis-server for the tests that need to misconfigure one.

Self-contained (no import of tests.conftest or hub.app), so the contract suite runs against
the backplane package alone.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from hub.backplane import Backplane, open_backplane
from hub.config import load
from hub.events import Draft, Event, encode_draft
from tests.support.processes import dies_with_us

REDIS_URL = os.environ.get("SSEHUB_TEST_REDIS", "redis://127.0.0.1:6379/0")


def nats_settings(tag: str) -> dict[str, str]:
    """A stream and subject prefix of a test's own on the test NATS server (tests/nats_server)."""
    return {"nats_stream": f"T{tag}", "nats_subject_prefix": f"t{tag}.ch"}


def draft(channel: str, data: Any = "x") -> Draft:
    return encode_draft(channel, "message", data, 65536)


class Recorder:
    """A Listener that keeps what it is given and lets a test wait for it."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.lost_channels: list[str] = []
        self.deleted_channels: list[str] = []
        self.closed_channels: list[str] = []
        #: what came, in order: an event's id, or "deleted:<channel>" / "closed:<channel>"
        self.sequence: list[str] = []
        self._changed = asyncio.Event()

    def deliver(self, events: Sequence[Event]) -> None:
        self.events.extend(events)
        self.sequence += [e.id for e in events]
        self._changed.set()

    def deleted(self, channel: str) -> None:
        self.deleted_channels.append(channel)
        self.sequence.append(f"deleted:{channel}")
        self._changed.set()

    def closed(self, channel: str) -> None:
        self.closed_channels.append(channel)
        self.sequence.append(f"closed:{channel}")
        self._changed.set()

    async def wait_for_closed(self, channel: str, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while channel not in self.closed_channels:
                self._changed.clear()
                await self._changed.wait()

    async def wait_for_deleted(self, channel: str, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while channel not in self.deleted_channels:
                self._changed.clear()
                await self._changed.wait()

    def lost(self, channel: str) -> None:
        self.lost_channels.append(channel)
        self._changed.set()

    def ids(self, channels: Sequence[str] | None = None) -> list[str]:
        return [e.id for e in self.events if channels is None or e.channel in channels]

    async def wait_for(self, ids: Sequence[str], timeout: float = 10.0) -> None:
        """Until every id in ``ids`` was delivered (fails after ``timeout`` seconds)."""
        wanted = set(ids)
        async with asyncio.timeout(timeout):
            while not wanted <= {e.id for e in self.events}:
                self._changed.clear()
                await self._changed.wait()


@dataclass
class Rig:
    """Builds backplanes of one kind, all on this test's Redis prefix; closes them at the end."""

    kind: str
    url: str
    prefix: str
    built: list[Backplane] = field(default_factory=list)
    #: further settings every backplane of this rig gets (the NATS stream of the test)
    defaults: dict[str, Any] = field(default_factory=dict)

    #: kind "engine": the engine every backplane of the rig links to (started by the first
    #: make, with its settings: hub.backplane.engine_server), and its directory
    engine: Any = None
    engine_dir: str = ""

    async def make(self, **settings: Any) -> tuple[Backplane, Recorder]:
        if self.kind == "engine":
            settings["backplane"] = await self._engine(settings)
        settings.setdefault("backplane", self.url)
        settings.setdefault("redis_prefix", self.prefix)
        for key, value in self.defaults.items():
            settings.setdefault(key, value)
        backplane = open_backplane(load(path=os.devnull, env={}, overrides=settings))
        recorder = Recorder()
        self.built.append(backplane)
        await backplane.start(recorder)
        return backplane, recorder

    async def _engine(self, settings: dict[str, Any]) -> str:
        """The engine's URL; the engine is started at the first call, in this event loop."""
        from hub.backplane.engine_server import EngineServer

        if self.engine is None:
            self.engine_dir = tempfile.mkdtemp(prefix="ssehub-engine-")
            own = {k: v for k, v in settings.items() if k != "backplane"}
            config = load(path=os.devnull, env={}, overrides=own)
            self.engine = EngineServer(config, os.path.join(self.engine_dir, "engine.sock"))
            await self.engine.start()
        return f"engine+unix://{self.engine.path}"

    async def close(self) -> None:
        for backplane in self.built:
            await backplane.close()
        if self.engine is not None:
            await self.engine.close()
            shutil.rmtree(self.engine_dir, ignore_errors=True)
        if self.kind == "redis":
            await delete_prefix(self.url, self.prefix)
        if self.kind == "nats":
            await delete_stream(self.url, self.defaults["nats_stream"])


async def delete_stream(url: str, stream: str) -> None:
    """Delete a test's stream on the test NATS server (nothing else lives there)."""
    import nats

    client = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
    try:
        await client.request(f"$JS.API.STREAM.DELETE.{stream}", b"", timeout=5)
    finally:
        await client.close()


async def delete_prefix(url: str, prefix: str) -> None:
    """Delete every key under ``prefix`` (SCAN + DEL: the shared Redis is never flushed)."""
    client = aioredis.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class OwnRedis:
    """A redis-server of this test's own, which it may reconfigure (CONFIG SET) at will."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = tempfile.mkdtemp(prefix="ssehub-redis-")
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        command = [binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", self._dir]
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=dies_with_us
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or self._process.poll() is not None:
                    self.stop()
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()  # this process, by its pid: never a broad kill
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        shutil.rmtree(self._dir, ignore_errors=True)

    async def command(self, *args: Any) -> Any:
        client = aioredis.Redis.from_url(self.url)
        try:
            return await client.execute_command(*args)
        finally:
            await client.aclose()
