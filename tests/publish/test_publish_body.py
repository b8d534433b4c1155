"""The body of a single publish as the socket brings it. A body that is all there when the handler
runs is taken as it is (no read loop): a chunked one, which announces no length, must still be
held to ``max_body_bytes``; a body still arriving is read whole, within ``body_timeout``. Raw
bytes on a real socket, so whether the body came in one piece is the test's choice."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import orjson
import pytest

from tests.conftest import HubServer, MakeHub

pytestmark = pytest.mark.any_backplane  # the body is read before any backplane is asked


def _chunked(path: str, body: bytes) -> tuple[bytes, bytes]:
    """A chunked POST of ``body`` in two chunks: (the head and first chunk, the rest)."""
    half = len(body) // 2
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    first = head + f"{half:x}\r\n".encode() + body[:half] + b"\r\n"
    rest = f"{len(body) - half:x}\r\n".encode() + body[half:] + b"\r\n0\r\n\r\n"
    return first, rest


async def _post(hub: HubServer, first: bytes, rest: bytes, pause: float) -> tuple[int, Any]:
    """Send ``first``, wait ``pause`` seconds (0: both in one write), send ``rest``; the answer."""
    reader, writer = await asyncio.open_connection(hub.server.host, hub.server.port)
    try:
        if pause:
            writer.write(first)
            await writer.drain()
            await asyncio.sleep(pause)
            writer.write(rest)
        else:
            writer.write(first + rest)
        await writer.drain()
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length: (\d+)", head)
            assert length is not None, head
            body = await reader.readexactly(int(length[1]))
    finally:
        writer.close()
    return int(head.split()[1]), orjson.loads(body)


async def test_a_whole_chunked_body_over_max_body_bytes_is_refused(make_hub: MakeHub) -> None:
    hub = await make_hub(max_body_bytes=2048, max_event_bytes=1024)
    first, rest = _chunked("/channels/big/events", orjson.dumps({"data": "x" * 3000}))
    status, answer = await _post(hub, first, rest, pause=0)
    assert status == 413, answer
    assert "max_body_bytes" in answer["error"]


@pytest.mark.parametrize("pause", [0, 0.2], ids=("in-one-write", "in-two-writes"))
async def test_a_chunked_body_within_the_limit_is_published(
    make_hub: MakeHub, pause: float
) -> None:
    hub = await make_hub(max_body_bytes=2048, max_event_bytes=1024)
    first, rest = _chunked("/channels/small/events", orjson.dumps({"data": "y" * 600}))
    status, answer = await _post(hub, first, rest, pause)
    assert status == 202, answer
    assert answer["channel"] == "small" and answer["id"].endswith(":small")
