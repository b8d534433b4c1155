"""HTTP by hand: raw bytes on a fresh connection, for requests no HTTP client would send
(malformed, HTTP/1.0, trickled a byte at a time) and answers read exactly as they came."""

from __future__ import annotations

import asyncio
import contextlib

import orjson

from tests.support.hubs import HubServer

__all__ = ["closed", "exchange", "json_error", "one_answer", "parse", "port_of"]


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


async def one_answer(port: int, request: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes on a fresh connection; the hub's first answer, read to the end its
    ``Content-Length`` gives. For an answer the hub sends while the request is unfinished:
    aiohttp then keeps the connection for its lingering close (10 s) before closing it, which
    ``exchange`` would wait for."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(timeout):
            head = await reader.readuntil(b"\r\n\r\n")
            _, headers, _ = parse(head)
            return head + await reader.readexactly(int(headers["content-length"]))
    finally:
        await closed(writer)


async def closed(writer: asyncio.StreamWriter) -> None:
    """Close and wait: a transport merely closed may outlive the test's loop, and its
    ResourceWarning then fails whichever test the garbage collector runs in."""
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


def parse(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    """An answer's status, headers (names in lower case) and body, as they came."""
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
