"""Odd bytes in every header, cookie and query value that reaches a decoder: a clear JSON 4xx
(or, where an EventSource should retry, the documented answer), never a 500.

An aiohttp client will not send raw non-latin-1 bytes, so these requests go over a plain socket:
the hub decodes header bytes as UTF-8 with surrogate escapes, which is how a ``\\xff`` became a
lone surrogate that crashed ``str.encode()`` deep inside a JWT library.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import jwt
import orjson
import pytest

from tests.conftest import HubServer, MakeHub

SECRET = "a-subscribe-secret-of-at-least-32-bytes!"
TOKEN = "publish-token-0123456789"
SCOPED = "scoped-token-0123456789"

pytestmark = pytest.mark.any_backplane  # header decoding happens before any backplane is asked


def good_grant() -> bytes:
    payload = {"exp": int(time.time()) + 300, "sub": "user-1", "channels": ["private/*"]}
    return jwt.encode(payload, SECRET, algorithm="HS256").encode()


async def raw_request(
    hub: HubServer, method: str, target: bytes, headers: list[bytes], body: bytes = b""
) -> tuple[int, dict[str, str], bytes]:
    """One request with exactly these bytes; the status, headers and body of its answer."""
    assert hub.server.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", hub.server.port)
    try:
        lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1"]
        lines += headers
        lines += [b"Connection: close", f"Content-Length: {len(body)}".encode()]
        writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        await writer.drain()
        async with asyncio.timeout(10):
            answer = await reader.read()
    finally:
        writer.close()
    head, _, rest = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    found = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        found[name.strip().lower()] = value.strip()
    if found.get("transfer-encoding") == "chunked":
        rest = _unchunk(rest)
    return int(status_line.split()[1]), found, rest


def _unchunk(raw: bytes) -> bytes:
    out = b""
    while raw:
        size_line, _, raw = raw.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out, raw = out + raw[:size], raw[size + 2 :]
    return out


def json_error(status: int, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    assert status != 500, body
    assert 400 <= status < 500, (status, body)
    assert headers["content-type"].startswith("application/json"), (headers, body)
    answer = orjson.loads(body)
    assert isinstance(answer, dict) and isinstance(answer.get("error"), str), answer
    return answer


@pytest.fixture
async def private(make_hub: MakeHub) -> HubServer:
    return await make_hub(
        private_channels=["private/*"],
        subscribe_jwt_secret=SECRET,
        publish_tokens=[TOKEN, {"token": SCOPED, "channels": ["jobs/*"]}],
    )


ODD = [b"\xff\xfe", b"\x80", b"\xc3", b"\xed\xa0\x80"]  # not UTF-8, a lone lead, a surrogate


@pytest.mark.parametrize("odd", ODD, ids=["fffe", "80", "lead", "surrogate"])
@pytest.mark.parametrize("where", ["prefix", "inside"])
async def test_grant_header_with_high_bytes(private: HubServer, odd: bytes, where: str) -> None:
    """A grant with a byte >= 0x80 is refused as not a JWT: 403 JSON, not a 500."""
    token = good_grant()
    token = odd + token if where == "prefix" else token[:20] + odd + token[20:]
    status, headers, body = await raw_request(
        private, "GET", b"/channels/private/x/events", [b"Authorization: Bearer " + token]
    )
    answer = json_error(status, headers, body)
    assert status == 403, answer
    assert "grant" in answer["error"]


@pytest.mark.parametrize("odd", ODD, ids=["fffe", "80", "lead", "surrogate"])
async def test_grant_cookie_with_high_bytes(private: HubServer, odd: bytes) -> None:
    token = good_grant()
    status, headers, body = await raw_request(
        private, "GET", b"/channels/private/x/events", [b"Cookie: ssehub_grant=" + odd + token]
    )
    answer = json_error(status, headers, body)
    assert status == 403, answer


async def test_ticket_with_high_bytes(private: HubServer) -> None:
    """A ticket in the query is percent-decoded: ``%ff`` is no UTF-8 either."""
    for ticket in (b"%ff%fe", b"abc%80def", b"%ed%a0%80"):
        status, headers, body = await raw_request(
            private, "GET", b"/channels/private/x/events?ticket=" + ticket, []
        )
        answer = json_error(status, headers, body)
        assert status == 403, answer
        assert "ticket" in answer["error"]


async def test_publish_token_with_high_bytes(private: HubServer) -> None:
    for odd in ODD:
        status, headers, body = await raw_request(
            private, "POST", b"/channels/jobs/1/events",
            [b"Authorization: Bearer " + odd + TOKEN.encode(),
             b"Content-Type: application/json"],
            b'{"data": 1}',
        )  # fmt: skip
        answer = json_error(status, headers, body)
        assert status == 403, answer
        status, headers, body = await raw_request(
            private, "POST", b"/tickets",
            [b"Authorization: Bearer " + SCOPED.encode() + odd, b"Content-Type: application/json"],
            b'{"channels": ["jobs/1"]}',
        )  # fmt: skip
        assert json_error(status, headers, body) and status == 403


async def test_idempotency_key_with_high_bytes(private: HubServer) -> None:
    for odd in ODD:
        status, headers, body = await raw_request(
            private, "POST", b"/channels/jobs/1/events",
            [b"Authorization: Bearer " + TOKEN.encode(), b"Content-Type: application/json",
             b"Idempotency-Key: key-" + odd],
            b'{"data": 1}',
        )  # fmt: skip
        answer = json_error(status, headers, body)
        assert status == 400 and "Idempotency-Key" in answer["error"], answer


async def test_last_event_id_with_high_bytes(private: HubServer) -> None:
    """An odd Last-Event-ID is a resume that cannot be exact: the stream opens (200) and says
    so, as for any unknown id; never a 500 that would stop the EventSource."""
    for odd in ODD:
        for header in (b"Last-Event-ID: " + odd + b"12:jobs/1", b"Last-Event-ID: 1" + odd):
            status, headers, body = await _open_and_peek(
                private, b"/channels/jobs/1/events", header
            )
            assert status == 200, body
            assert headers["content-type"] == "text/event-stream"
            assert b'event: reset\ndata: {"reason":"unknown-id"' in body, body
        status, headers, body = await _open_and_peek(
            private, b"/channels/jobs/1/events?lastEventId=%ff%80", b"X-Nothing: 1"
        )
        assert status == 200, body
        assert b'event: reset\ndata: {"reason":"unknown-id"' in body, body


async def _open_and_peek(
    hub: HubServer, target: bytes, header: bytes
) -> tuple[int, dict[str, str], bytes]:
    assert hub.server.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", hub.server.port)
    try:
        writer.write(
            b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
            + header + b"\r\n\r\n"
        )  # fmt: skip
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n\r\n")
            first = await reader.read(4096)
            # up to the end of the first event after the retry hint, however the bytes arrive
            while first.count(b"\n\n") < 2 and (more := await reader.read(4096)):
                first += more
    finally:
        writer.close()
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in lines if line)
    }
    return int(status_line.split()[1]), headers, first


async def test_origin_with_high_bytes(make_hub: MakeHub) -> None:
    """An Origin header is compared, never decoded further: an odd one is just not allowed."""
    hub = await make_hub(cors_origins=["https://good.example"],
                         publish_cors_origins=["https://good.example"])  # fmt: skip
    # the control: the good origin itself is allowed, so an absent header below means "refused"
    status, headers, body = await raw_request(
        hub, "OPTIONS", b"/channels/jobs/1/events",
        [b"Origin: https://good.example", b"Access-Control-Request-Method: POST"],
    )  # fmt: skip
    assert status == 204 and headers["access-control-allow-origin"] == "https://good.example"
    for odd in ODD:
        status, headers, body = await raw_request(
            hub, "OPTIONS", b"/channels/jobs/1/events",
            [b"Origin: https://good.example" + odd, b"Access-Control-Request-Method: POST"],
        )  # fmt: skip
        assert status == 204 and "access-control-allow-origin" not in headers
        status, headers, body = await raw_request(
            hub, "GET", b"/channels", [b"Origin: https://" + odd + b".example"]
        )
        assert status in (200, 403), body
        assert "access-control-allow-origin" not in headers


async def test_channel_names_and_queries_with_high_bytes(private: HubServer) -> None:
    """Raw and percent-encoded odd bytes in paths and query values: JSON 4xx."""
    for target in (
        b"/channels/jobs/%ff/events",
        b"/events?channel=%ff%fe",
        b"/events?channel=jobs/1&replay=%ff",
        b"/events?channel=jobs/1&from=%ff",
        b"/event-stream?city=%ff&sec=1",
        b"/event-stream?city=UTC&sec=%ff",
    ):
        status, headers, body = await raw_request(
            private, "GET", target, [b"Accept: text/event-stream"]
        )
        json_error(status, headers, body)
