"""``hub.compat_aiohttp``: the private parts of aiohttp it uses are there, in the shape it
expects, on the installed aiohttp (so an upgrade that moves them fails here, not in
production), and the hub answers correctly both ways: with the private API, and on aiohttp's
public API only (``SSEHUB_PUBLIC_API_ONLY``), each through a real server on a real socket.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import AsyncIterator

import orjson
import pytest
from aiohttp import web

from hub.clients import ClientAddresses
from hub.compat_aiohttp import (
    PUBLIC_API_ONLY_ENV,
    HandlerRunner,
    handler_swap_fits,
    queue_swap_fits,
    uses_of_the_queue,
)
from hub.protocol import HubRunner
from tests.support.processes import HubProcess

TOKEN = "compat-token-0123456789abcdef"
#: A header with a control character (aiohttp cannot parse it) on a publish carrying a token.
BAD = (
    b"POST /channels/c/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
    + TOKEN.encode()
    + b"\r\nX-Bad: \x01\r\nContent-Length: 2\r\n\r\n{}"
)
PIPELINED = (
    b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n"
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
)


def test_the_private_api_is_there_on_the_installed_aiohttp() -> None:
    """If this fails after an aiohttp upgrade, the hub still runs (the fallback), but without
    the JSON answers or the memory saving: adapt ``hub.compat_aiohttp`` or drop the trick."""
    assert handler_swap_fits(), "AppRunner._make_server / web.Server._kwargs changed"
    assert queue_swap_fits(), f"RequestHandler._messages is used otherwise: {uses_of_the_queue()}"


async def _exchange(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        async with asyncio.timeout(10):
            return await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.fixture(params=["private", "public-only"])
async def hub_process(request: pytest.FixtureRequest) -> AsyncIterator[HubProcess]:
    env = {"HUB_PORT": "0", "HUB_DEMO_JOBS": "false", "HUB_PUBLISH_TOKENS": TOKEN}
    if request.param == "public-only":
        env[PUBLIC_API_ONLY_ENV] = "1"
    process = await HubProcess.spawn(env=env)
    try:
        yield await process.started()
    finally:
        await process.stop()


async def test_both_ways_answer_pipelined_requests_in_order(hub_process: HubProcess) -> None:
    answers = await _exchange(hub_process.port, PIPELINED)
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", answers)  # the bodies end without a newline
    assert statuses == [b"200", b"404", b"200"]


async def test_both_ways_a_bad_request_is_a_400_and_one_short_line(
    hub_process: HubProcess, request: pytest.FixtureRequest
) -> None:
    """Private API: the JSON error. Public API only: aiohttp's text/plain, said once at start.
    Either way: the log has one short line, no token, no request bytes, no traceback."""
    answer = await _exchange(hub_process.port, BAD)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 400 ") or head.startswith(b"HTTP/1.1 400 "), answer
    public_only = "public-only" in request.node.callspec.id
    if public_only:
        assert b"text/plain" in head
    else:
        assert orjson.loads(body)["error"].startswith("the request could not be read")
    await _exchange(
        hub_process.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    await asyncio.sleep(0.3)  # the reader task collects the last lines
    output = hub_process.output
    assert TOKEN not in output and "X-Bad" not in output and "Traceback" not in output, output
    about = [line for line in output.splitlines() if "answered 400" in line]
    assert len(about) == 1 and len(about[0]) < 200, output
    assert ("public API only" in output) == public_only, output


async def _ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


@pytest.mark.parametrize("switch", ["", "pipeline", "handler"])
async def test_each_switch_turns_its_trick_off_and_only_it(
    monkeypatch: pytest.MonkeyPatch, switch: str
) -> None:
    """A real runner on a real socket: the connection's class and its request queue, with
    every trick on and with each switched off."""
    monkeypatch.setenv(PUBLIC_API_ONLY_ENV, switch)
    app = web.Application()
    app.router.add_get("/", _ok)
    runner = HubRunner(app, ClientAddresses(()))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await reader.readuntil(b"ok")).startswith(b"HTTP/1.1 200 ")
        assert runner.server is not None
        (connection,) = runner.server.connections
        swapped = type(connection) is not web.RequestHandler
        queue = type(connection._messages)
        writer.close()
        await writer.wait_closed()
    finally:
        await runner.cleanup()
    assert isinstance(runner, HandlerRunner) and runner.swapped == swapped
    assert runner.lighter == (queue is not deque)
    assert swapped == (switch != "handler")
    assert (queue is deque) == (switch in ("pipeline", "handler")), queue
