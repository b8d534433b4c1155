"""The event loop under the hub: uvloop (the ``speed`` extra), with aiofastnet's transports on it
when that is installed and ``SSEHUB_AIOFASTNET=1``. Real hub processes, real sockets."""

from __future__ import annotations

import asyncio
import os

import aiohttp
import pytest

from hub.server import AIOFASTNET_ENV, loop_factory, loop_name
from tests.support.hubs import hub_env
from tests.support.processes import HubProcess

pytestmark = pytest.mark.any_backplane  # the loop is below any backplane

uvloop = pytest.importorskip("uvloop")


async def _hub(**env: str) -> HubProcess:
    settings = {"host": "127.0.0.1", "port": 0, "log_level": "info", "config": os.devnull}
    process = await HubProcess.spawn(env=hub_env(settings) | env)
    try:
        return await process.started()
    except BaseException:
        await process.end()
        raise


async def _delivered(hub: HubProcess) -> str:
    """One event published and read back through a stream of this hub."""
    url = f"{hub.url}/channels/loop/events"
    async with aiohttp.ClientSession() as session, session.get(url) as stream:
        assert stream.status == 200
        async with session.post(url, json={"event": "x", "data": {"n": 1}}) as published:
            assert published.status == 202, await published.text()
        async with asyncio.timeout(10):
            async for line in stream.content:
                if line.startswith(b"data: "):
                    return line.decode().strip()
    raise AssertionError("the stream ended without the event")


async def test_the_hub_runs_on_aiofastnet_when_asked() -> None:
    """Installed and ``SSEHUB_AIOFASTNET=1``: the start line names it, and events flow."""
    pytest.importorskip("aiofastnet")
    hub = await _hub(**{AIOFASTNET_ENV: "1"})
    try:
        assert "loop: uvloop+aiofastnet;" in hub.output
        assert await _delivered(hub) == 'data: {"n":1}'
    finally:
        await hub.stop()


async def test_plain_uvloop_by_default() -> None:
    """Not asked for: plain uvloop, whether aiofastnet is installed or not (it saved nothing
    measurable, docs/performance.md)."""
    hub = await _hub()
    try:
        assert "loop: uvloop;" in hub.output
        assert await _delivered(hub) == 'data: {"n":1}'
    finally:
        await hub.stop()


def test_the_loop_gives_every_server_aiofastnet_transports(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the start line claims: a server made on the hub's loop (aiohttp's is) gets its
    connections as aiofastnet's transports, not uvloop's."""
    aiofastnet = pytest.importorskip("aiofastnet")
    monkeypatch.setenv(AIOFASTNET_ENV, "1")
    made: list[asyncio.BaseTransport] = []
    accepted = asyncio.Event()

    class Accepting(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            made.append(transport)
            accepted.set()

    async def connect_once() -> str:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Accepting, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        async with asyncio.timeout(5):
            await accepted.wait()
        writer.close()
        server.close()
        await server.wait_closed()
        return loop_name(loop)

    factory = loop_factory()
    assert factory is not None
    with asyncio.Runner(loop_factory=factory) as runner:
        assert runner.run(connect_once()) == "uvloop+aiofastnet"
    assert isinstance(made[0], aiofastnet.Transport)
