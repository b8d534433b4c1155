"""``hub.compat_aiohttp`` swaps aiohttp's per-connection request queue (a deque) for a list.

That is a private attribute of ``aiohttp.web_protocol.RequestHandler`` (~0.7 KiB per
connection saved, so per idle subscriber). The hub checks the shape at start and keeps the deque
if it does not fit; these tests say in CI whether a new release still uses the queue only in
ways the list supports, and the real server (``python -m hub serve``, the only one that uses
``hub.protocol``) still answers pipelined requests in order.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from hub.compat_aiohttp import _Pipeline
from hub.compat_aiohttp import uses_of_the_queue as _uses_of_the_queue
from tests.conftest import MakeHubProcess
from tests.support.processes import HubProcess


@pytest.mark.any_backplane
def test_aiohttp_uses_its_queue_only_as_the_list_allows() -> None:
    """Method calls the list has, len() and truth tests; nothing else (no indexing, no
    passing it on, no other deque method)."""
    uses = _uses_of_the_queue()
    assert any(how == "assigned" for _, how in uses), "RequestHandler no longer has _messages"
    for line, how in uses:
        if how.startswith("."):
            assert hasattr(_Pipeline, how[1:]), f"web_protocol.py:{line} calls {how}"
        else:
            assert how in ("len()", "truth", "assigned"), f"web_protocol.py:{line}: {how}"


@pytest.mark.any_backplane
def test_the_list_is_a_fifo() -> None:
    queue = _Pipeline()
    queue.append(1)
    queue.append(2)
    assert (len(queue), queue.popleft(), queue.popleft(), bool(queue)) == (2, 1, 2, False)


@pytest.fixture
async def hub_process(make_hub_process: MakeHubProcess) -> HubProcess:
    return await make_hub_process(demo_jobs="false")


@pytest.mark.any_backplane
async def test_pipelined_requests_are_answered_in_order(hub_process: HubProcess) -> None:
    """Three requests in one write on one connection: three answers, in order."""
    requests = (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", hub_process.port)
    try:
        writer.write(requests)
        async with asyncio.timeout(10):
            answers = await reader.read()
    finally:
        writer.close()
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", answers)  # the bodies end without a newline
    assert statuses == [b"200", b"404", b"200"]
