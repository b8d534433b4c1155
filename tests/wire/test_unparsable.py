"""Requests aiohttp cannot parse: answered by ``hub.protocol`` with a short JSON 400 like every
other error, and logged as one short line each, with nothing the client sent in it.

Only the real server (``python -m hub serve``) uses ``hub.protocol``, so these tests run a hub
process.
"""

from __future__ import annotations

import asyncio

import pytest

from hub.protocol import LOG_BURST
from tests.conftest import MakeHubProcess
from tests.support.processes import HubProcess
from tests.support.raw_http import closed, exchange, json_error

pytestmark = pytest.mark.any_backplane

TOKEN = "holes-token-0123456789abcdef"


@pytest.fixture
async def hub_process(make_hub_process: MakeHubProcess) -> HubProcess:
    return await make_hub_process(publish_tokens=TOKEN, demo_jobs="false")


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n",
        b"GET /heal\x00thz HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\n\r\n",
        b"BREW /healthz HTCPCP/1.0\r\n\r\n",
        b"GET /channels/a/events HTTP/1.1\r\nHost: x\r\nLast-Event-ID: "
        + b"7" * 9000
        + b"\r\n\r\n",
    ],
    ids=("100kb-header", "nul-in-request-line", "control-char", "not-http", "huge-last-event-id"),
)
async def test_unparsable_requests_get_json(hub_process: HubProcess, request_bytes: bytes) -> None:
    """Requests aiohttp cannot parse are answered 400 in JSON like every other error; a header
    over the line limit 431, naming the limit (tests/ops/test_newcomer.py)."""
    too_long = len(request_bytes) > 8190
    error = json_error(await exchange(hub_process.port, request_bytes), 431 if too_long else 400)
    assert error.startswith("a request header is longer than 8190 bytes" if too_long
                            else "the request could not be read")  # fmt: skip
    assert len(error) < 300


async def test_bad_requests_leave_no_secret_and_no_flood_in_the_log(
    hub_process: HubProcess,
) -> None:
    """Malformed requests carrying the publish token: the log has no token and no request
    bytes, one short line each, at most LOG_BURST of them (then a count of the left-out)."""
    bad = (
        b"POST /channels/c/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + TOKEN.encode()
        + b"\r\nX-Bad: \x01\r\nContent-Length: 2\r\n\r\n{}"
    )
    for _ in range(3 * LOG_BURST):
        json_error(await exchange(hub_process.port, bad), 400)
    reader, writer = await asyncio.open_connection("127.0.0.1", hub_process.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    await reader.read()
    await closed(writer)
    await asyncio.sleep(0.3)  # the reader task collects the last lines
    output = hub_process.output
    assert TOKEN not in output
    assert "Traceback" not in output and "X-Bad" not in output
    about = [line for line in output.splitlines() if "answered 400" in line]
    assert 1 <= len(about) <= LOG_BURST, output
    assert all(len(line) < 200 for line in about)
