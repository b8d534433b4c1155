"""Holes found by probing the hub: each test here failed on the code before its fix.

Bad input of every kind gets a short JSON error (never a 500, never text/plain), a stream is
never cut off by a limit meant for idle connections, and nothing a client sends ends up in a log
line: aiohttp's own errors (requests it cannot parse) are answered by ``hub.protocol``, which only
the real server (``python -m hub serve``) uses, so those tests run a hub process.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from typing import Any

import orjson
import pytest

from hub.events import MAX_DATA_DEPTH
from hub.protocol import LOG_BURST
from tests.conftest import HubServer, MakeHub
from tests.processes import HubProcess

TOKEN = "holes-token-0123456789abcdef"


async def exchange(port: int, request: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes on a fresh connection; everything the hub answers until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(timeout):
            return await reader.read()
    finally:
        await closed(writer)


async def closed(writer: asyncio.StreamWriter) -> None:
    """Close and wait: a transport merely closed may outlive the test's loop, and its
    ResourceWarning then fails whichever test the garbage collector runs in."""
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


def parse(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def json_error(answer: bytes, status: int) -> str:
    """Assert ``answer`` is a JSON error with ``status``; its message."""
    got, headers, body = parse(answer)
    assert got == status, answer[:300]
    assert headers["content-type"].startswith("application/json"), headers
    if headers.get("transfer-encoding") == "chunked":
        body = body.split(b"\r\n", 1)[1].rsplit(b"\r\n0\r\n", 1)[0]
    return str(orjson.loads(body)["error"])


def port_of(hub: HubServer) -> int:
    assert hub.server.port is not None
    return hub.server.port


# -- input the handlers see --------------------------------------------------------------------


@pytest.mark.any_backplane
async def test_non_utf8_token_is_403(make_hub: MakeHub) -> None:
    """``Authorization: Bearer \\xff\\xfe`` is a wrong token (403 JSON), not a 500."""
    hub = await make_hub(publish_tokens=[TOKEN])
    request = (
        b"POST /channels/c/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Authorization: Bearer \xff\xfe\r\nContent-Type: application/json\r\n"
        b'Content-Length: 11\r\n\r\n{"data": 1}'
    )
    assert json_error(await exchange(port_of(hub), request), 403) == "this token may not publish"


@pytest.mark.parametrize("depth", [MAX_DATA_DEPTH + 1, 600, 1022])
@pytest.mark.any_backplane
async def test_deeply_nested_data_is_400(make_hub: MakeHub, depth: int) -> None:
    """``data`` nested deeper than the encoder writes (but within what the parser reads) is a
    400 naming the limit, single and in a batch, and nothing is published; at the limit: 202."""
    hub = await make_hub()
    nested = "[" * depth + "]" * depth
    for path, body in (
        ("/channels/c/events", f'{{"data": {nested}}}'),
        ("/publish", f'[{{"channel": "c", "data": 1}}, {{"channel": "c", "data": {nested}}}]'),
    ):
        async with hub.session.post(
            f"{hub.url}{path}", data=body, headers={"Content-Type": "application/json"}
        ) as response:
            answer = await response.json()
            assert response.status == 400, answer
            assert f"at most {MAX_DATA_DEPTH} levels" in answer["error"]
    assert "events[1]" in answer["error"]
    ok = "[" * MAX_DATA_DEPTH + "]" * MAX_DATA_DEPTH
    await hub.publish("c", orjson.loads(ok))
    async with hub.session.get(f"{hub.url}/channels") as response:
        assert [c["name"] for c in await response.json() if not c["clock"]] == ["c"]


@pytest.mark.any_backplane
async def test_long_last_event_id_is_a_reset(hub: HubServer) -> None:
    """A Last-Event-ID longer than any id of ours (MAX_LAST_EVENT_ID) is not parsed: the stream
    gets ``reset`` ``unknown-id`` and goes on, never an HTTP error a browser gives up on."""
    await hub.publish("c", "kept")
    stream = await hub.subscribe("/channels/c/events", {"Last-Event-ID": "1" * 600 + ":c"})
    reset = await stream.next()
    assert reset.event == "reset" and orjson.loads(reset.data)["reason"] == "unknown-id"
    assert (await stream.next()).data == "kept"


@pytest.mark.any_backplane
async def test_http10_stream_does_not_claim_keep_alive(hub: HubServer) -> None:
    """An HTTP/1.0 stream is ended by closing the connection (no chunks), so it must not say
    ``Connection: keep-alive``; it streams events all the same."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(hub))
    try:
        writer.write(b"GET /channels/old/events HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n")
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
            status, headers, _ = parse(head)
            assert status == 200 and headers["content-type"].startswith("text/event-stream")
            assert "keep-alive" not in headers.get("connection", "").lower(), headers
            assert "transfer-encoding" not in headers
            assert b"retry: 3000" in await reader.readuntil(b"\n\n")
            receipt = await hub.publish("old", "hello 1.0")
            frame = await reader.readuntil(b"\n\n")
            assert frame == f"id: {receipt['id']}\ndata: hello 1.0\n\n".encode()
    finally:
        await closed(writer)


# -- slow clients ------------------------------------------------------------------------------


async def _trickle(port: int, data: bytes, every: float) -> float | None:
    """Send ``data`` a byte at a time; the seconds after which the hub closed, or None."""
    sock = socket.socket()
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    try:
        await loop.sock_connect(sock, ("127.0.0.1", port))
        for byte in data:
            try:
                await loop.sock_sendall(sock, bytes([byte]))
                async with asyncio.timeout(every):
                    if await loop.sock_recv(sock, 1024) == b"":
                        return time.monotonic() - started
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - started
        return None
    finally:
        sock.close()


@pytest.mark.any_backplane
async def test_slowloris_is_cut_off(make_hub: MakeHub) -> None:
    """Request headers sent a byte every 0.1 s hold the connection for idle_timeout at most."""
    hub = await make_hub(idle_timeout=1)
    headers = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 60 + b"\r\n\r\n"
    took = await _trickle(port_of(hub), headers, every=0.1)
    assert took is not None, "the slow client kept its connection for the whole request"
    assert took < 1 + 1.5, took


@pytest.mark.any_backplane
async def test_idle_keepalive_is_closed_but_streams_are_not(make_hub: MakeHub) -> None:
    """idle_timeout closes a keep-alive connection with no request; a quiet event stream is not
    idle (it is one long answer) and lives on past it."""
    hub = await make_hub(idle_timeout=0.5, heartbeat=60)
    stream = await hub.subscribe("/channels/quiet/events")
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(hub))
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        async with asyncio.timeout(5):
            await reader.readuntil(b"\r\n\r\n")
            while await reader.read(65536):  # the rest of the answer, then the close
                pass
    finally:
        await closed(writer)
    await asyncio.sleep(1.0)
    receipt = await hub.publish("quiet", "still here")
    assert (await stream.next()).id == receipt["id"]


@pytest.mark.any_backplane
async def test_slow_body_is_408(make_hub: MakeHub) -> None:
    """A publish body that does not arrive within body_timeout: 408 JSON naming the setting."""
    hub = await make_hub(body_timeout=0.3)
    request = (
        b"POST /channels/c/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"data": '
    )
    error = json_error(await exchange(port_of(hub), request, timeout=15), 408)
    assert "body_timeout" in error


# -- what aiohttp answers itself: the real server ----------------------------------------------


@pytest.fixture
async def hub_process() -> Any:
    process = await HubProcess.spawn(
        env={"HUB_PORT": "0", "HUB_PUBLISH_TOKENS": TOKEN, "HUB_DEMO_JOBS": "false"}
    )
    try:
        yield await process.started()
    finally:
        await process.stop()


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
    over the line limit 431, naming the limit (tests/test_newcomer.py)."""
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
