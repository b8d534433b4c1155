"""The SSE wire format: exact bytes of frames, headers, the retry hint and heartbeats.

Each payload test asserts both the exact bytes on the wire and what a spec-conforming client
(``tests.support.sse_client.Parser``, which parses as a browser does) makes of them.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest

from tests.conftest import HubServer, MakeHub
from tests.support.helpers import frame_of, subscribe_raw
from tests.support.raw_http import closed, parse, port_of

STREAM_PATHS = (
    "/channels/wire/events",
    "/events?channel=wire",
    "/events?channel=wire&channel=other",
)


@pytest.mark.parametrize("path", STREAM_PATHS, ids=("channel", "events", "events-multi"))
@pytest.mark.any_backplane
async def test_stream_headers(hub: HubServer, path: str) -> None:
    """Every stream is 200 text/event-stream, not cached, not buffered by nginx, not compressed."""
    stream, _ = await subscribe_raw(hub, path)
    headers = stream.response.headers
    assert stream.response.status == 200
    assert headers["Content-Type"].split(";")[0].strip() == "text/event-stream"
    assert headers["Cache-Control"] == "no-cache"
    assert headers["X-Accel-Buffering"] == "no"
    assert "Content-Encoding" not in headers
    await stream.close()


@pytest.mark.any_backplane
async def test_clock_stream_headers(hub: HubServer) -> None:
    """The original design's clock URL answers with the same event-stream headers."""
    stream, _ = await subscribe_raw(hub, "/event-stream?city=Europe/London&sec=60")
    headers = stream.response.headers
    assert headers["Content-Type"].split(";")[0].strip() == "text/event-stream"
    assert headers["Cache-Control"] == "no-cache"
    assert headers["X-Accel-Buffering"] == "no"
    await stream.close()


@pytest.mark.any_backplane
async def test_retry_hint_is_first_and_default(hub: HubServer) -> None:
    """The body starts with the retry hint (default 3000 ms): no BOM, nothing before it."""
    _, parser = await subscribe_raw(hub, "/channels/wire/events")
    assert bytes(parser.raw).startswith(b"retry: 3000\n\n")
    assert parser.retry == 3000


@pytest.mark.any_backplane
async def test_retry_hint_follows_setting(make_hub: MakeHub) -> None:
    """The ``retry`` setting is what the hint says, written in ASCII digits."""
    hub = await make_hub(retry=1234)
    _, parser = await subscribe_raw(hub, "/events?channel=wire")
    assert bytes(parser.raw).startswith(b"retry: 1234\n\n")


@pytest.mark.any_backplane
async def test_heartbeat_comment(make_hub: MakeHub) -> None:
    """An idle stream gets a comment every ``heartbeat`` seconds; no client event fires."""
    hub = await make_hub(heartbeat=0.1)
    stream, parser = await subscribe_raw(hub, "/channels/quiet/events")
    started = time.monotonic()
    async with asyncio.timeout(2):
        while len(parser.comments) < 3:
            chunk = await stream.response.content.readany()
            assert chunk, "the stream ended"
            parser.feed(chunk)
    # three beats at 0.1 s take about 0.3 s: beats come on time, not in a burst or late
    assert 0.15 < time.monotonic() - started < 1.5
    assert parser.messages == []
    body = bytes(parser.raw)
    assert body.startswith(b"retry: 3000\n\n")
    # nothing but comment frames after the retry hint
    for frame in body[len(b"retry: 3000\n\n") :].split(b"\n\n")[:-1]:
        assert frame.startswith(b":"), frame
    await stream.close()


@pytest.mark.any_backplane
async def test_no_heartbeat_before_its_time(hub: HubServer) -> None:
    """With the default 15 s heartbeat, a fresh stream carries only its retry hint."""
    stream, parser = await subscribe_raw(hub, "/channels/quiet/events")
    assert await stream.quiet(0.2) == []
    assert bytes(parser.raw) == b"retry: 3000\n\n"
    await stream.close()


# (published string, data lines on the wire, event.data a spec-conforming client sees)
TEXT_PAYLOADS = (
    ("one\ntwo", [b"one", b"two"], "one\ntwo"),
    ("one\rtwo", [b"one", b"two"], "one\ntwo"),
    ("one\r\ntwo", [b"one", b"two"], "one\ntwo"),
    ("a\n\nb", [b"a", b"", b"b"], "a\n\nb"),
    ("trailing\n", [b"trailing", b""], "trailing\n"),
    ("\nleading", [b"", b"leading"], "\nleading"),
    (" leading space", [b" leading space"], " leading space"),
    ("  two spaces", [b"  two spaces"], "  two spaces"),
    ("", [b""], ""),
    ("plain", [b"plain"], "plain"),
    ('{"looks": "like json"}', [b'{"looks": "like json"}'], '{"looks": "like json"}'),
    ('"quoted"', [b'"quoted"'], '"quoted"'),
    ("data: inner", [b"data: inner"], "data: inner"),
    (": not a comment", [b": not a comment"], ": not a comment"),
    ("id: 7\nevent: x", [b"id: 7", b"event: x"], "id: 7\nevent: x"),
)
TEXT_IDS = (
    "LF",
    "CR",
    "CRLF",
    "blank-line",
    "trailing-LF",
    "leading-LF",
    "leading-space",
    "two-spaces",
    "empty",
    "plain",
    "json-looking-text",
    "quoted-text",
    "field-looking-text",
    "colon-first",
    "injection-attempt",
)


@pytest.mark.parametrize(("published", "lines", "seen"), TEXT_PAYLOADS, ids=TEXT_IDS)
async def test_string_data_exact_bytes(
    hub: HubServer, backplane: str, published: str, lines: list[bytes], seen: str
) -> None:
    """A JSON string is sent as its text, one ``data: `` line per CR/LF/CRLF-separated line."""
    stream, parser = await subscribe_raw(hub, "/channels/wire/events")
    receipt = await hub.publish("wire", published, event="note")
    message = await stream.next()
    expected = b"id: %b\nevent: note\n%b\n" % (
        receipt["id"].encode(),
        b"".join(b"data: " + line + b"\n" for line in lines),
    )
    assert frame_of(parser.raw, receipt["id"]) == expected
    assert message.data == seen
    assert message.event == "note"
    assert message.id == receipt["id"]
    await stream.close()


UNICODE = (
    "line\u2028separator",
    "paragraph\u2029separator",
    "next\u0085line",
    "vertical\x0btab",
    "form\x0cfeed",
    "file\x1cgroup\x1drecord\x1e",
    "caf\u00e9 \u65e5\u672c \U0001f600 \u0627\u0644\u0639\u0631\u0628\u064a\u0629",
    "\ufeffstarts with a BOM character",
    "tab\tinside",
)


@pytest.mark.parametrize(
    "published",
    UNICODE,
    ids=("U+2028", "U+2029", "U+0085", "VT", "FF", "FS-GS-RS", "non-ASCII", "U+FEFF", "TAB"),
)
async def test_unicode_is_not_split(hub: HubServer, backplane: str, published: str) -> None:
    """Only CR and LF end lines: U+2028, U+0085, VT, FF... stay inside one UTF-8 ``data:`` line."""
    stream, parser = await subscribe_raw(hub, "/channels/wire/events")
    receipt = await hub.publish("wire", published)
    message = await stream.next()
    expected = b"id: %b\ndata: %b\n\n" % (receipt["id"].encode(), published.encode())
    assert frame_of(parser.raw, receipt["id"]) == expected
    assert message.data == published
    assert message.event == "message"
    await stream.close()


JSON_VALUES: tuple[Any, ...] = (
    {"pct": 40, "label": "half\nway", "nested": {"list": [1, 2.5, None, True]}},
    [1, "two", {"three": 3}],
    42,
    -0.5,
    True,
    False,
    None,
    {},
    [],
    {"unicode": "\u2028\u00e9\U0001f600"},
)


@pytest.mark.parametrize(
    "value",
    JSON_VALUES,
    ids=(
        "object",
        "array",
        "int",
        "float",
        "true",
        "false",
        "null",
        "empty-object",
        "empty-array",
        "unicode",
    ),
)
async def test_json_data_is_compact_json(hub: HubServer, backplane: str, value: Any) -> None:
    """Any non-string JSON value goes out as compact JSON on one line; JSON.parse gives it back."""
    stream, parser = await subscribe_raw(hub, "/channels/wire/events")
    receipt = await hub.publish("wire", value)
    message = await stream.next()
    compact = orjson.dumps(value)
    assert b"\n" not in compact
    expected = b"id: %b\ndata: %b\n\n" % (receipt["id"].encode(), compact)
    assert frame_of(parser.raw, receipt["id"]) == expected
    assert orjson.loads(message.data) == value
    await stream.close()


async def test_default_event_is_message(hub: HubServer, backplane: str) -> None:
    """Without ``event`` (or with ``"message"``) the client sees a plain ``message`` event."""
    stream, parser = await subscribe_raw(hub, "/channels/wire/events")
    first = await hub.publish("wire", "a")
    second = await hub.publish("wire", "b", event="message")
    messages = await stream.take(2)
    assert [(m.event, m.data, m.id) for m in messages] == [
        ("message", "a", first["id"]),
        ("message", "b", second["id"]),
    ]
    for receipt in (first, second):
        frame = frame_of(parser.raw, receipt["id"])
        assert b"event:" not in frame or b"event: message\n" in frame
    await stream.close()


@pytest.mark.any_backplane
async def test_no_bom_and_utf8(hub: HubServer) -> None:
    """The stream is UTF-8 without a byte-order mark, so even a leading U+FEFF survives."""
    stream, parser = await subscribe_raw(hub, "/channels/wire/events")
    await hub.publish("wire", "\ufeffx")
    message = await stream.next()
    assert not bytes(parser.raw).startswith(b"\xef\xbb\xbf")
    assert message.data == "\ufeffx"
    await stream.close()


async def test_same_frame_bytes_for_every_subscriber(hub: HubServer, backplane: str) -> None:
    """Every subscriber of an event gets the very same frame, id line included, on every route."""
    streams = [
        await subscribe_raw(hub, "/channels/shared/events"),
        await subscribe_raw(hub, "/channels/shared/events"),
        await subscribe_raw(hub, "/events?channel=shared"),
        await subscribe_raw(hub, "/events?channel=elsewhere&channel=shared"),
    ]
    receipt = await hub.publish("shared", {"x": "y\nz"}, event="update")
    assert receipt["subscribers"] == 4
    frames = []
    for stream, parser in streams:
        message = await stream.next()
        assert (message.event, message.data, message.id) == (
            "update",
            '{"x":"y\\nz"}',
            receipt["id"],
        )
        frames.append(frame_of(parser.raw, receipt["id"]))
        await stream.close()
    assert len(set(frames)) == 1
    assert frames[0] == b'id: %b\nevent: update\ndata: {"x":"y\\nz"}\n\n' % receipt["id"].encode()


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
