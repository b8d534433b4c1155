"""Durable Streams at ``/v1/stream/{path}`` through HTTP, beyond the conformance suite: a stream
is a channel both ways (a native ``EventSource`` reads the appends and resumes with
``Last-Event-ID``; a Durable client reads what the hub's own API published), offsets are
positions, long-poll and SSE wake on native publishes, closes and deletions, a backplane
without ``Streams`` answers 501. On every backplane that implements ``Streams`` (the others
are skipped, saying so).
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from typing import Any, Protocol, runtime_checkable

import orjson
import pytest

from tests.conftest import HubServer, MakeHub
from tests.support.sse_client import open_stream


async def durable_hub(make_hub: MakeHub, **settings: Any) -> HubServer:
    """A hub, skipped when its backplane does not serve Durable Streams (501)."""
    hub = await make_hub(**settings)
    async with hub.session.put(f"{hub.url}/v1/stream/probe-{uuid.uuid4().hex}") as response:
        if response.status == 501:
            pytest.skip((await response.json())["error"])
        assert response.status == 201, await response.text()
    return hub


def name() -> str:
    return f"ds/{uuid.uuid4().hex[:12]}"


async def put(hub: HubServer, path: str, content_type: str, body: bytes = b"", **h: str) -> int:
    headers = {"Content-Type": content_type, **h}
    async with hub.session.put(f"{hub.url}/v1/stream/{path}", data=body, headers=headers) as r:
        assert r.status in (200, 201), await r.text()
        return r.status


async def post(hub: HubServer, path: str, content_type: str, body: bytes, **h: str) -> str:
    """Append; the Stream-Next-Offset."""
    headers = {"Content-Type": content_type, **h}
    async with hub.session.post(f"{hub.url}/v1/stream/{path}", data=body, headers=headers) as r:
        assert r.status in (200, 204), await r.text()
        return r.headers["Stream-Next-Offset"]


async def read(hub: HubServer, path: str, offset: str = "-1") -> tuple[bytes, dict[str, str]]:
    async with hub.session.get(f"{hub.url}/v1/stream/{path}?offset={offset}") as r:
        assert r.status == 200, await r.text()
        return await r.read(), dict(r.headers)


async def test_appends_are_native_events_that_resume(make_hub: MakeHub, backplane: str) -> None:
    """JSON messages, text and bytes as a native EventSource sees them; Last-Event-ID resumes."""
    hub = await durable_hub(make_hub)
    orders, log, blob = name(), name(), name()
    await put(hub, orders, "application/json", b'[{"id": 1}]')
    await post(hub, orders, "application/json", b'[{"id": 2}, [3, "x"]]')
    await put(hub, log, "text/plain; charset=utf-8", "grüß\ndich".encode())
    await post(hub, log, "text/plain", b"a\r\nb")  # a CR: not text an EventSource keeps
    await put(hub, blob, "application/octet-stream", b"\x00\xff\n")
    stream = await hub.subscribe(f"/channels/{orders}/events?from=start")
    first, *rest = await stream.take(3)
    assert [m.data for m in [first, *rest]] == ['{"id":1}', '{"id":2}', '[3,"x"]']
    texts = await (await hub.subscribe(f"/channels/{log}/events?from=start")).take(2)
    assert texts[0].data == "grüß\ndich"
    assert base64.b64decode(texts[1].data) == b"a\r\nb"
    binary = await hub.subscribe(f"/channels/{blob}/events?from=start")
    assert base64.b64decode((await binary.next()).data) == b"\x00\xff\n"
    assert " base64" in binary.parser.comments
    offset = await post(hub, orders, "application/json", b'{"id": 4}')
    live = await stream.next()
    assert live.data == '{"id":4}' and int(offset) == int(live.id.split(":")[0])
    resumed = await hub.subscribe(f"/channels/{orders}/events", {"Last-Event-ID": first.id})
    assert [m.data for m in await resumed.take(3)] == ['{"id":2}', '[3,"x"]', '{"id":4}']


async def test_native_publishes_are_read_by_durable_clients(
    make_hub: MakeHub, backplane: str
) -> None:
    hub = await durable_hub(make_hub)
    orders, log = name(), name()
    await put(hub, orders, "application/json")
    await put(hub, log, "text/plain", b"durable, ")
    for data in ({"x": 1}, "hello", "123", "multi\nline"):
        await hub.publish(orders, data)
    await hub.publish(log, "native")
    body, headers = await read(hub, orders)
    assert orjson.loads(body) == [{"x": 1}, "hello", 123, "multi\nline"]
    receipt = await hub.publish(orders, "last")
    assert headers["Stream-Next-Offset"] < f"{int(receipt['id'].split(':')[0]):020d}"
    assert (await read(hub, log))[0] == b"durable, native"


async def test_a_channel_with_native_history_is_a_stream_only_after_put(
    make_hub: MakeHub, backplane: str
) -> None:
    hub = await durable_hub(make_hub)
    channel = name()
    await hub.publish(channel, {"before": True})
    async with hub.session.get(f"{hub.url}/v1/stream/{channel}") as response:
        assert response.status == 404 and "error" in await response.json()
    await put(hub, channel, "application/json", b'{"after": true}')
    assert orjson.loads((await read(hub, channel))[0]) == [{"after": True}]


async def test_big_appends_are_split_and_read_back_exactly(
    make_hub: MakeHub, backplane: str
) -> None:
    """Past max_event_bytes a text or binary append becomes several events (text split on a
    character boundary, so each stays text); the reads join them byte for byte."""
    hub = await durable_hub(make_hub, max_event_bytes=1024)
    text, blob = name(), name()
    body = ("ä€😀x" * 700).encode()
    await put(hub, text, "text/plain")
    await post(hub, text, "text/plain", body)
    assert (await read(hub, text))[0] == body
    native = await hub.subscribe(f"/channels/{text}/events?from=start")
    parts = await native.quiet(0.5)
    assert len(parts) > 1 and "".join(m.data for m in parts).encode() == body
    raw = bytes(range(256)) * 20
    await put(hub, blob, "application/octet-stream", raw)
    assert (await read(hub, blob))[0] == raw
    async with hub.session.post(
        f"{hub.url}/v1/stream/{name()}", data=b"x", headers={"Content-Type": "text/plain"}
    ) as response:
        assert response.status == 404


async def test_long_poll_wakes_on_native_publish_close_and_delete(
    make_hub: MakeHub, backplane: str
) -> None:
    hub = await durable_hub(make_hub, durable_long_poll=20)
    path = name()
    await put(hub, path, "application/json")
    url = f"{hub.url}/v1/stream/{path}?offset=now&live=long-poll"

    async def poll(target: str = url) -> tuple[int, bytes, dict[str, str]]:
        async with hub.session.get(target) as response:
            return response.status, await response.read(), dict(response.headers)

    waiting = asyncio.create_task(poll())
    await asyncio.sleep(0.3)
    await hub.publish(path, {"native": 1})
    status, body, headers = await asyncio.wait_for(waiting, 10)
    assert status == 200 and orjson.loads(body) == [{"native": 1}]
    tail = headers["Stream-Next-Offset"]
    waiting = asyncio.create_task(poll(url.replace("offset=now", f"offset={tail}")))
    await asyncio.sleep(0.3)
    async with hub.session.post(f"{hub.url}/channels/{path}/close") as response:
        assert response.status == 200  # the native close closes the stream
    status, _, headers = await asyncio.wait_for(waiting, 10)
    assert status == 204 and headers["Stream-Closed"] == "true"
    other = name()
    await put(hub, other, "text/plain")
    waiting = asyncio.create_task(poll(url.replace(path, other)))
    await asyncio.sleep(0.3)
    async with hub.session.delete(f"{hub.url}/v1/stream/{other}") as response:
        assert response.status == 204
    status, body, _ = await asyncio.wait_for(waiting, 10)
    assert status == 404 and b"error" in body


async def test_a_long_poll_times_out_with_204(make_hub: MakeHub, backplane: str) -> None:
    hub = await durable_hub(make_hub, durable_long_poll=0.3)
    path = name()
    await put(hub, path, "text/plain", b"x")
    async with hub.session.get(f"{hub.url}/v1/stream/{path}?offset=now&live=long-poll") as r:
        assert r.status == 204 and r.headers["Stream-Up-To-Date"] == "true"
        assert r.headers["Stream-Cursor"].isdigit() and "Stream-Closed" not in r.headers


async def test_sse_reads_native_publishes_then_the_close(make_hub: MakeHub, backplane: str) -> None:
    hub = await durable_hub(make_hub)
    path = name()
    await put(hub, path, "application/json", b'{"n": 1}')
    stream = await open_stream(hub.session, f"{hub.url}/v1/stream/{path}?offset=-1&live=sse")
    hub.streams.append(stream)
    assert "Stream-SSE-Data-Encoding" not in stream.response.headers
    data, control = await stream.take(2)
    assert (data.event, orjson.loads(data.data)) == ("data", [{"n": 1}])
    assert orjson.loads(control.data)["upToDate"] is True
    await hub.publish(path, {"n": 2})
    data, control = await stream.take(2)
    assert orjson.loads(data.data) == [{"n": 2}] and control.event == "control"
    async with hub.session.post(
        f"{hub.url}/v1/stream/{path}", headers={"Stream-Closed": "true"}
    ) as response:
        assert response.status == 204
    last = await stream.until_end()
    assert [m.event for m in last] == ["control"]
    assert orjson.loads(last[0].data) == {
        "streamNextOffset": orjson.loads(control.data)["streamNextOffset"],
        "streamClosed": True,
        "upToDate": True,
    }


async def test_appends_are_counted_in_metrics(make_hub: MakeHub, backplane: str) -> None:
    hub = await durable_hub(make_hub)
    path = name()
    await put(hub, path, "application/json", b"[1, 2]")
    await post(hub, path, "application/json", b"[3]")
    async with hub.session.get(f"{hub.url}/metrics") as response:
        metrics = await response.text()
    published = [line for line in metrics.splitlines() if line.startswith("hub_events_pub")]
    assert published == ["hub_events_published_total 3"]


@pytest.mark.any_backplane
async def test_a_backplane_without_streams_answers_501(
    make_hub: MakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As Redis and NATS did before their Streams: the wiring's isinstance check fails."""

    @runtime_checkable
    class NotThere(Protocol):
        def create_stream_elsewhere(self) -> None: ...

    monkeypatch.setattr("hub.dialects.durable.routes.Streams", NotThere)
    hub = await make_hub()
    for method in ("PUT", "POST", "GET", "DELETE"):
        async with hub.session.request(method, f"{hub.url}/v1/stream/x") as response:
            assert response.status == 501
            assert "memory backplane" in (await response.json())["error"]


async def test_an_offset_past_retention_is_410_and_the_start_is_the_oldest_kept(
    make_hub: MakeHub, backplane: str
) -> None:
    hub = await durable_hub(make_hub, history_size=3)
    path = name()
    await put(hub, path, "application/json")
    offsets = [await post(hub, path, "application/json", b"%d" % n) for n in range(5)]
    for live in ("", "&live=long-poll", "&live=sse"):
        url = f"{hub.url}/v1/stream/{path}?offset={offsets[0]}{live}"
        async with hub.session.get(url) as response:
            assert response.status == 410, live
            assert "older than the events this hub keeps" in (await response.json())["error"]
    assert orjson.loads((await read(hub, path))[0]) == [2, 3, 4]
    assert orjson.loads((await read(hub, path, offsets[1]))[0]) == [2, 3, 4]
