"""A real third-party SSE client (httpx + httpx-sse) reads the hub's streams end to end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator

import httpx
import pytest
from httpx_sse import EventSource, ServerSentEvent, aconnect_sse

from tests.conftest import HubServer


async def events(
    source: EventSource | AsyncIterator[ServerSentEvent],
) -> AsyncGenerator[ServerSentEvent, None]:
    """The events a browser would dispatch: httpx-sse also yields retry-only and empty blocks."""
    blocks = source.aiter_sse() if isinstance(source, EventSource) else source
    async for sse in blocks:
        if sse.data:
            yield sse


async def first(iterator: AsyncIterator[ServerSentEvent], count: int) -> list[ServerSentEvent]:
    found: list[ServerSentEvent] = []
    async with asyncio.timeout(5):
        async for sse in iterator:
            found.append(sse)
            if len(found) == count:
                break
    return found


async def test_httpx_sse_reads_a_stream(hub: HubServer, backplane: str) -> None:
    """httpx-sse gets the retry hint, then events with the hub's ids, types and data."""
    async with (
        httpx.AsyncClient(base_url=hub.url, timeout=httpx.Timeout(5, read=None)) as client,
        aconnect_sse(client, "GET", "/events?channel=orders&channel=jobs/1") as source,
    ):
        assert source.response.status_code == 200
        assert source.response.headers["content-type"].startswith("text/event-stream")
        stream = source.aiter_sse()
        hint = await anext(stream)
        assert hint.retry == 3000
        sent = [
            await hub.publish("orders", {"pct": 40, "note": "caf\u00e9"}, event="progress"),
            await hub.publish("jobs/1", "line one\nline two\u2028same line"),
            await hub.publish("orders", " leading space"),
        ]
        got = await first(events(stream), 3)
        await stream.aclose()
    assert [(e.id, e.event) for e in got] == [
        (sent[0]["id"], "progress"),
        (sent[1]["id"], "message"),
        (sent[2]["id"], "message"),
    ]
    assert got[0].json() == {"pct": 40, "note": "caf\u00e9"}
    assert got[1].data == "line one\nline two\u2028same line"
    assert got[2].data == " leading space"


async def test_httpx_sse_resumes_with_last_event_id(hub: HubServer, backplane: str) -> None:
    """A client that resumes with the last id it saw gets exactly what it missed, then live."""
    async with httpx.AsyncClient(base_url=hub.url, timeout=httpx.Timeout(5, read=None)) as client:
        async with aconnect_sse(client, "GET", "/channels/c/events") as source:
            seen = events(source)
            await hub.publish("c", "one")
            await hub.publish("c", "two")
            got = await first(seen, 2)
            last_id = got[-1].id
            await seen.aclose()
        missed = [await hub.publish("c", "three"), await hub.publish("c", "four")]
        async with aconnect_sse(
            client, "GET", "/channels/c/events", headers={"Last-Event-ID": last_id}
        ) as source:
            again = events(source)
            replayed = await first(again, 2)
            live = await hub.publish("c", "five")
            replayed += await first(again, 1)
            await again.aclose()
    assert [(e.data, e.id) for e in replayed] == [
        ("three", missed[0]["id"]),
        ("four", missed[1]["id"]),
        ("five", live["id"]),
    ]


@pytest.mark.any_backplane
async def test_httpx_sse_reads_a_clock(hub: HubServer) -> None:
    """The original design's clock URL works with a stock client library."""
    async with (
        httpx.AsyncClient(base_url=hub.url, timeout=httpx.Timeout(5, read=None)) as client,
        aconnect_sse(client, "GET", "/event-stream?city=Asia/Calcutta&sec=1") as source,
    ):
        stream = events(source)
        (tick,) = await first(stream, 1)
        await stream.aclose()
    assert tick.event == "UPDATE"
    assert tick.id == ""
    assert tick.json()["timezone"] == "Asia/Calcutta"
    assert tick.json()["iso"].endswith("+05:30")
    assert (tick.json()["offset"], tick.json()["abbreviation"]) == ("+05:30", "IST")
