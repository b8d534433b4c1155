"""Durable Streams' connection lifecycle and caching, as the protocol asks them of a server
(its sections 10.1 and 10.2), through HTTP: an SSE read ends after ``durable_sse_close`` seconds
and its client resumes from the last control's offset without a gap; a catch-up or long-poll
page says how long a cache may keep it (``private`` on a private channel), answers that must
not be kept say ``no-store``. On every backplane that serves Durable Streams.
"""

from __future__ import annotations

import time

import jwt
import orjson

from tests.conftest import MakeHub
from tests.dialects.test_durable_streams import durable_hub, name, put
from tests.support.sse_client import open_stream

SECRET = "a-subscribe-secret-of-at-least-32-bytes!"
PAGE = "max-age=60, stale-while-revalidate=300"


async def test_an_sse_read_ends_and_resumes_from_its_offset(
    make_hub: MakeHub, backplane: str
) -> None:
    """With ``durable_sse_close = 1``: the read ends by itself, cleanly, its last control not
    ``streamClosed`` (the client must reconnect); a reconnect from its ``streamNextOffset`` gets
    what was appended since, and nothing twice."""
    hub = await durable_hub(make_hub, durable_sse_close=1)
    path = name()
    await put(hub, path, "application/json", b'{"n": 1}')
    url = f"{hub.url}/v1/stream/{path}?live=sse&offset="
    first = await open_stream(hub.session, url + "-1")
    hub.streams.append(first)
    got = await first.until_end(timeout=10)  # ends within about a second
    assert [m.event for m in got] == ["data", "control"]
    assert orjson.loads(got[0].data) == [{"n": 1}]
    control = orjson.loads(got[-1].data)
    assert "streamClosed" not in control and control["upToDate"] is True
    await hub.publish(path, {"n": 2})
    again = await open_stream(hub.session, url + control["streamNextOffset"])
    hub.streams.append(again)
    data, control_again = await again.take(2)
    assert orjson.loads(data.data) == [{"n": 2}] and control_again.event == "control"
    assert [m.event for m in await again.until_end(timeout=10)] == []


async def test_pages_say_how_long_a_cache_may_keep_them(make_hub: MakeHub, backplane: str) -> None:
    """A catch-up page and its ``304``: ``public, max-age=60, stale-while-revalidate=300``;
    on a channel that needs a grant, ``private``; a long-poll's page as a catch-up's, its
    ``204`` ``no-store``; ``offset=now`` ``no-store``; a live SSE read ``no-cache``."""
    hub = await durable_hub(
        make_hub, private_channels=["mine/*"], subscribe_jwt_secret=SECRET, durable_long_poll=0.2
    )
    claims = {"exp": int(time.time()) + 300, "channels": ["mine/*"]}
    grant = {"Authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"}
    public, private = name(), f"mine/{name()}"
    for path in (public, private):
        await put(hub, path, "text/plain", b"hello")
    base = f"{hub.url}/v1/stream"
    for path, headers, kind in ((public, {}, "public"), (private, grant, "private")):
        async with hub.session.get(f"{base}/{path}?offset=-1", headers=headers) as page:
            assert page.status == 200 and await page.read() == b"hello"
            assert page.headers["Cache-Control"] == f"{kind}, {PAGE}"
            etag, tail = page.headers["ETag"], page.headers["Stream-Next-Offset"]
        again = headers | {"If-None-Match": etag}
        async with hub.session.get(f"{base}/{path}?offset=-1", headers=again) as unchanged:
            assert unchanged.status == 304
            assert unchanged.headers["Cache-Control"] == f"{kind}, {PAGE}"
        polled = f"{base}/{path}?offset={tail}&live=long-poll"
        async with hub.session.get(polled, headers=headers) as nothing:
            assert nothing.status == 204
            assert nothing.headers["Cache-Control"] == "no-store"
        polled = f"{base}/{path}?offset=-1&live=long-poll"
        async with hub.session.get(polled, headers=headers) as page:
            assert page.status == 200 and await page.read() == b"hello"
            assert page.headers["Cache-Control"] == f"{kind}, {PAGE}"
        async with hub.session.get(f"{base}/{path}?offset=now", headers=headers) as now:
            assert now.status == 200 and now.headers["Cache-Control"] == "no-store"
    live = await open_stream(hub.session, f"{base}/{public}?offset=-1&live=sse")
    hub.streams.append(live)
    assert live.response.headers["Cache-Control"] == "no-cache"
