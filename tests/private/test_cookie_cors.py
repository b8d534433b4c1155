"""A grant's cookie from a page of another origin: the browser sends it only with credentials
(``withCredentials``, ``credentials: "include"``) and reads the answer only if it names the
page's exact origin with ``Access-Control-Allow-Credentials: true``. A listed origin gets that
on every subscribe route (native, AI SDK, Durable Streams) and their preflights, even with
``*`` listed beside it; any other origin gets ``*`` without credentials, so no unlisted site
reads a user's private stream with the user's cookie. Headers through HTTP, a real hub.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import jwt
import pytest

from tests.conftest import HubServer, MakeHub
from tests.support.sse_client import open_stream

SECRET = "a-subscribe-secret-of-at-least-32-bytes!"
ORIGIN = "https://app.example"
PATHS = (
    "/channels/mine/ai/events?from=start",
    "/ai/mine/ai/stream",
    "/v1/stream/mine/ds?offset=-1&live=sse",
)


def _cookie() -> dict[str, str]:
    claims = {"exp": int(time.time()) + 300, "channels": ["mine/*"], "sub": "u1"}
    return {"Cookie": f"ssehub_grant={jwt.encode(claims, SECRET, algorithm='HS256')}"}


async def _hub(make_hub: MakeHub) -> HubServer:
    hub = await make_hub(
        cors_origins=["*", ORIGIN], private_channels=["mine/*"], subscribe_jwt_secret=SECRET
    )
    async with hub.session.put(
        f"{hub.url}/v1/stream/mine/ds", headers={"Content-Type": "application/json"}
    ) as made:
        if made.status == 501:
            pytest.skip((await made.json())["error"])
        assert made.status == 201, await made.text()
    await hub.publish("mine/ai", {"type": "start"})  # the AI SDK's route has something to send
    return hub


def _vary(headers: Mapping[str, str]) -> set[str]:
    return {v.strip().lower() for v in headers.get("Vary", "").split(",")}


@pytest.mark.parametrize("path", PATHS, ids=("native", "ai-sdk", "durable-sse"))
async def test_a_listed_origin_reads_with_its_cookie(
    make_hub: MakeHub, backplane: str, path: str
) -> None:
    hub = await _hub(make_hub)
    stream = await open_stream(hub.session, hub.url + path, {"Origin": ORIGIN, **_cookie()})
    hub.streams.append(stream)
    headers = stream.response.headers
    assert headers["Access-Control-Allow-Origin"] == ORIGIN
    assert headers["Access-Control-Allow-Credentials"] == "true"
    assert "origin" in _vary(headers)
    await stream.next(timeout=5)  # the grant in the cookie was taken: the stream serves
    # without the cookie: 401, still readable by the page (so it can say why)
    async with hub.session.get(hub.url + path, headers={"Origin": ORIGIN}) as refused:
        assert refused.status == 401
        assert refused.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert refused.headers["Access-Control-Allow-Credentials"] == "true"
    sent = {"Origin": ORIGIN, "Access-Control-Request-Method": "GET"}
    async with hub.session.options(hub.url + path.partition("?")[0], headers=sent) as answer:
        assert 200 <= answer.status < 300
        assert answer.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert answer.headers["Access-Control-Allow-Credentials"] == "true"


@pytest.mark.parametrize("path", PATHS, ids=("native", "ai-sdk", "durable-sse"))
async def test_another_origin_gets_no_credentials(
    make_hub: MakeHub, backplane: str, path: str
) -> None:
    hub = await _hub(make_hub)
    headers = {"Origin": "https://elsewhere.example", **_cookie()}
    stream = await open_stream(hub.session, hub.url + path, headers)
    hub.streams.append(stream)
    assert stream.response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in stream.response.headers
    assert "origin" in _vary(stream.response.headers)
