"""POST /publish/stream: NDJSON in, one answer line per event line out, in order.

A receipt per good line (the id subscribers see), an error line ``{"line", "error", "status"}``
per bad one, and the stream goes on; refusals before the stream starts are JSON errors like
POST /publish's. The hub never buffers without bound: a client that reads no receipts stops
the hub reading its body.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from tests.conftest import HubServer, MakeHub
from tests.support.helpers import metrics

NDJSON = {"Content-Type": "application/x-ndjson"}
TOKEN = "stream-token-0123456789"
SCOPED = "stream-scoped-0123456789"


def ndjson(*items: Any) -> bytes:
    return b"".join(orjson.dumps(item) + b"\n" for item in items)


async def stream(
    hub: HubServer, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, list[dict[str, Any]]]:
    """POST the body (bytes or an async iterator of bytes); the status and the answer lines."""
    async with hub.session.post(
        f"{hub.url}/publish/stream", data=body, headers={**NDJSON, **(headers or {})}
    ) as response:
        raw = await response.read()
        if response.status != 200:
            assert response.content_type == "application/json"
            return response.status, [orjson.loads(raw)]
        assert response.content_type == "application/x-ndjson"
        assert raw == b"" or raw.endswith(b"\n")
        return 200, [orjson.loads(line) for line in raw.splitlines()]


async def test_receipts_in_order_with_the_ids_subscribers_get(
    hub: HubServer, backplane: str
) -> None:
    """One receipt per line, in order, each the id and channel its subscribers receive."""
    watcher = await hub.subscribe("/events?channel=s1&channel=s2")
    items = [{"channel": f"s{1 + i % 2}", "event": "n", "data": {"i": i}} for i in range(300)]
    status, answers = await stream(hub, ndjson(*items))
    assert status == 200 and len(answers) == 300
    assert [a["channel"] for a in answers] == [item["channel"] for item in items]
    assert all(
        set(a) == {"id", "channel", "subscribers"} and a["subscribers"] == 1 for a in answers
    )
    for answer, item in zip(answers, items, strict=True):
        message = await watcher.next()
        assert (message.id, message.event, orjson.loads(message.data)) == (
            answer["id"],
            "n",
            item["data"],
        )


async def test_a_bad_line_is_an_error_line_and_the_stream_goes_on(
    make_hub: MakeHub, backplane: str
) -> None:
    """Bad JSON, an unknown field, a bad channel, a line too long: each gets its error line
    (numbered from 1, blank lines counted but unanswered) with POST /publish's message and
    status; nothing of it is published, the lines around it are."""
    hub = await make_hub(max_event_bytes=100)
    watcher = await hub.subscribe("/channels/ok/events")
    too_long = orjson.dumps({"channel": "ok", "data": "x" * 5000})  # > 4 x 100 + 4096
    body = b"".join(
        [
            ndjson({"channel": "ok", "data": 1}),
            b"\n   \n",  # lines 2 and 3: blank
            b'{"channel": "ok", "data": \n',  # 4
            ndjson({"channel": "ok", "data": 2, "id_key": "k"}),  # 5
            ndjson({"channel": "bad name", "data": 3}),  # 6
            too_long + b"\n",  # 7
            ndjson({"channel": "ok", "data": "y" * 101}),  # 8: over max_event_bytes
            ndjson({"channel": "ok", "data": 4}),  # 9
            ndjson({"channel": "ok"}),  # 10
            b'{"channel": "ok", "data": 5}',  # 11, with no final newline
        ]
    )
    status, answers = await stream(hub, body)
    assert status == 200
    errors = {a["line"]: (a["status"], a["error"]) for a in answers if "line" in a}
    assert [a.get("line", "ok") for a in answers] == [
        "ok", 4, 5, 6, 7, 8, "ok", 10, "ok",
    ]  # fmt: skip
    assert errors[4][0] == 400 and "the line is not valid JSON" in errors[4][1]
    assert errors[5] == (400, "unknown field 'id_key'; allowed: channel, data, event, tags")
    assert errors[6][0] == 400 and "invalid channel name 'bad name'" in errors[6][1]
    assert errors[7] == (413, "the line is longer than 4496 bytes (4 x max_event_bytes + 4096)")
    assert errors[8][0] == 413 and "max_event_bytes" in errors[8][1]
    assert errors[10] == (400, "data is required")
    for data in ("1", "4", "5"):
        assert (await watcher.next()).data == data
    assert (await metrics(hub))["hub_events_published_total"] == 3


@pytest.mark.any_backplane("the line splitter, before any backplane call")
async def test_a_line_too_long_is_not_kept_while_it_trickles(make_hub: MakeHub) -> None:
    """A line far longer than the limit, sent in pieces: its error line comes before its end
    arrives (it was dropped, not buffered), and the line after it is published."""
    hub = await make_hub(max_event_bytes=100)
    seen = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield b'{"channel": "a", "data": "'
        for _ in range(20):
            yield b"x" * 1000
        await asyncio.wait_for(seen.wait(), 10)  # the hub answered before the line ended
        yield b'"}\n' + ndjson({"channel": "a", "data": 1})

    async with hub.session.post(f"{hub.url}/publish/stream", data=body(), headers=NDJSON) as r:
        first = orjson.loads(await r.content.readline())
        assert (first["line"], first["status"]) == (1, 413)
        seen.set()
        second = orjson.loads(await r.content.readline())
        assert second["channel"] == "a" and "id" in second
        assert await r.content.read() == b""


async def test_a_trickled_body(hub: HubServer, backplane: str) -> None:
    """Lines cut anywhere, arriving a few bytes at a time: the same receipts, in order."""
    body = ndjson(*({"channel": "t", "data": i} for i in range(20)))

    async def trickle() -> AsyncIterator[bytes]:
        for at in range(0, len(body), 7):
            yield body[at : at + 7]
            await asyncio.sleep(0.002)

    watcher = await hub.subscribe("/channels/t/events")
    status, answers = await stream(hub, trickle())
    assert status == 200 and len(answers) == 20
    for i, answer in enumerate(answers):
        message = await watcher.next()
        assert (message.id, message.data) == (answer["id"], str(i))


@pytest.mark.any_backplane("publish auth is checked by the route")
async def test_auth_as_on_publish(make_hub: MakeHub) -> None:
    """No token: 401, a wrong one: 403 (JSON, before any line is read); a scoped token's line
    to a channel outside its patterns: a 403 error line, its other lines published."""
    hub = await make_hub(publish_tokens=[TOKEN, {"token": SCOPED, "channels": ["jobs/*"]}])
    body = ndjson({"channel": "jobs/1", "data": 1}, {"channel": "other", "data": 2})
    assert await stream(hub, body) == (401, [{"error": "missing Authorization: Bearer <token>"}])
    wrong = {"Authorization": "Bearer not-the-token-at-all"}
    assert await stream(hub, body, wrong) == (403, [{"error": "this token may not publish"}])
    status, answers = await stream(hub, body, {"Authorization": f"Bearer {SCOPED}"})
    assert status == 200
    assert answers[0]["channel"] == "jobs/1"
    assert answers[1] == {
        "line": 2,
        "error": "this token may not publish to channel 'other'",
        "status": 403,
    }
    status, answers = await stream(hub, body, {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and [a["channel"] for a in answers] == ["jobs/1", "other"]


async def test_a_deleted_channel_refuses_its_lines_only(make_hub: MakeHub, backplane: str) -> None:
    """410 error lines for the deleted channel, receipts for the others around them."""
    hub = await make_hub()
    await hub.publish("gone", 1)
    async with hub.session.delete(f"{hub.url}/channels/gone") as response:
        if response.status == 501:
            pytest.skip("this backplane cannot delete channels (no Deletion)")
        assert response.status == 200, await response.text()
    body = ndjson(*({"channel": "gone" if i % 2 else "here", "data": i} for i in range(6)))
    status, answers = await stream(hub, body)
    assert status == 200
    assert [a.get("channel") for a in answers[::2]] == ["here"] * 3
    for line, answer in zip((2, 4, 6), answers[1::2], strict=True):
        assert (answer["line"], answer["status"]) == (line, 410)
        assert "channel 'gone' was deleted" in answer["error"]


@pytest.mark.any_backplane
async def test_refusals_before_the_stream(hub: HubServer) -> None:
    """Wrong Content-Type: 415; an Idempotency-Key: 400 (streamed lines have none); an empty
    body: 200 and no answer."""
    async with hub.session.post(
        f"{hub.url}/publish/stream", data=b"{}\n", headers={"Content-Type": "application/json"}
    ) as response:
        assert response.status == 415
        assert "Content-Type must be application/x-ndjson" in (await response.json())["error"]
    status, answer = await stream(hub, b"{}\n", {"Idempotency-Key": "k1"})
    assert status == 400 and "Idempotency-Key is not taken" in answer[0]["error"]
    assert await stream(hub, b"") == (200, [])
    assert await stream(hub, b"\n\n") == (200, [])
    assert (await metrics(hub))["hub_events_published_total"] == 0


@pytest.mark.any_backplane
async def test_over_the_publish_rate_the_stream_is_slowed_not_refused(make_hub: MakeHub) -> None:
    """publish_rate is kept by waiting: every line gets its receipt, none a 429."""
    hub = await make_hub(publish_rate=2000, publish_burst=20)
    body = ndjson(*({"channel": "r", "data": i} for i in range(100)))

    async def pieces() -> AsyncIterator[bytes]:  # several chunks, so several batches
        for at in range(0, len(body), 200):
            yield body[at : at + 200]
            await asyncio.sleep(0)

    status, answers = await stream(hub, pieces())
    assert status == 200 and len(answers) == 100 and all("id" in a for a in answers)


@pytest.mark.any_backplane
async def test_a_client_that_reads_no_receipts_stops_the_hub_reading(hub: HubServer) -> None:
    """Send as fast as possible and read nothing: the client's sends stop going through (the
    hub stopped reading), and the count of published events stops growing; once the client
    reads, every line is answered, in order. What the backpressure bounds is the kernel's
    socket buffers, not a queue in the hub."""
    channel = "c" * 200  # long receipts: they fill the socket buffers soon
    line = orjson.dumps({"channel": channel, "data": 0}) + b"\n"
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await loop.sock_connect(sock, (hub.server.host, hub.server.port))
    head = (
        "POST /publish/stream HTTP/1.1\r\nHost: hub\r\nContent-Type: application/x-ndjson\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    await loop.sock_sendall(sock, head.encode())
    piece = line * 100
    chunk = b"%x\r\n%s\r\n" % (len(piece), piece)
    sent = 0
    stop = asyncio.Event()

    async def write() -> None:
        nonlocal sent
        while not stop.is_set():
            await loop.sock_sendall(sock, chunk)
            sent += 100
            assert sent < 5_000_000, "the hub read the body without bound"
        await loop.sock_sendall(sock, b"0\r\n\r\n")

    writer = asyncio.create_task(write())
    try:
        # The sends stop going through: the hub no longer reads the body ...
        last = -1
        while sent != last:
            last = sent
            await asyncio.sleep(1.0)
        # ... and once what the socket buffers held is worked through, it publishes no more.
        published, before = -1.0, -2.0
        for _ in range(50):
            if published == before:
                break
            before, published = published, (await metrics(hub))["hub_events_published_total"]
            await asyncio.sleep(0.3)
        assert published == before, "the hub kept publishing from a body it should not read"
        assert published < sent
        stop.set()
        raw = bytearray()
        while not raw.endswith(b"\r\n0\r\n\r\n"):
            data = await asyncio.wait_for(loop.sock_recv(sock, 1 << 20), 10)
            assert data, "the hub closed the connection"
            raw += data
        await writer
    finally:
        writer.cancel()
        sock.close()
    body = _unchunk(bytes(raw).split(b"\r\n\r\n", 1)[1])
    answers = body.splitlines()
    assert len(answers) == sent
    assert all(orjson.loads(a)["channel"] == channel for a in answers[:: max(1, sent // 50)])


def _unchunk(data: bytes) -> bytes:
    out = bytearray()
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return bytes(out)
        out += data[:size]
        data = data[size + 2 :]
