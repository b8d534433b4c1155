"""Durable Streams' bad input and its auth, through HTTP: odd bytes in headers, paths and offsets,
bodies past the limits, malformed producer headers; writes need what a publish needs (tokens,
their scope), reads what a subscribe needs (a grant or ticket for a private channel), and no
reader learns of a stream it may not read. Every refusal is a JSON error, never a 500.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import jwt
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import HubServer, MakeHub
from tests.support.hubs import running_hub
from tests.support.raw_http import exchange, json_error, port_of

SECRET = "a-subscribe-secret-of-at-least-32-bytes!"
ADMIN = "admin-token-0123456789"
SCOPED = "scoped-token-0123456789"

pytestmark = pytest.mark.any_backplane  # (the memory backplane: the checks come before it)


def name() -> str:
    return f"in/{uuid.uuid4().hex[:12]}"


async def status_of(
    hub: HubServer, method: str, path: str, body: bytes = b"", **headers: str
) -> tuple[int, Any]:
    async with hub.session.request(
        method, f"{hub.url}{path}", data=body, headers=headers, skip_auto_headers=["Content-Type"]
    ) as response:
        if method != "HEAD" and response.status >= 400:
            assert response.content_type == "application/json", await response.text()
            answer = await response.json()
            assert set(answer) == {"error"}, answer
            return response.status, answer["error"]
        return response.status, await response.read()


async def made(hub: HubServer, content_type: str = "application/json", **headers: str) -> str:
    path = name()
    status, why = await status_of(
        hub, "PUT", f"/v1/stream/{path}", **{"Content-Type": content_type, **headers}
    )
    assert status == 201, why
    return path


@pytest.mark.parametrize(
    "offset",
    ["abc", "-2", "0,1", "0%201", "1" * 21, "%00", "%FF", "now%20", "%EF%BC%91", "1e3", "0x10"],
)
async def test_bad_offsets_are_400(make_hub: MakeHub, offset: str) -> None:
    hub = await make_hub()
    path = await made(hub)
    for live in ("", "&live=long-poll", "&live=sse"):
        status, why = await status_of(hub, "GET", f"/v1/stream/{path}?offset={offset}{live}")
        assert status == 400 and "offset" in why, (offset, live, why)


async def test_bad_reads_are_400(make_hub: MakeHub) -> None:
    hub = await make_hub()
    path = await made(hub)
    for query, words in [
        ("offset=", "empty"),
        ("offset=-1&offset=now", "one offset"),
        (f"offset={10**19:020d}", "past the stream's tail"),
        ("offset=-1&live=websocket", "live="),
        ("live=sse", "needs an offset"),
        ("live=long-poll", "needs an offset"),
    ]:
        status, why = await status_of(hub, "GET", f"/v1/stream/{path}?{query}")
        assert status == 400 and words in why, (query, why)


@pytest.mark.parametrize(
    ("path", "status"),
    [("a%20b", 400), ("%FF", 400), ("x" * 201, 400), ("time/UTC/1", 400), ("a%0Ab", 400)],
)
async def test_bad_paths(make_hub: MakeHub, path: str, status: int) -> None:
    hub = await make_hub()
    for method in ("PUT", "POST", "GET", "HEAD", "DELETE"):
        got, _ = await status_of(hub, method, f"/v1/stream/{path}", b"x")
        assert got == status, (method, path)


async def test_odd_bytes_in_headers(make_hub: MakeHub) -> None:
    """Latin-1 and control bytes in the protocol's headers: 400s (a content type made of them
    is the default type), on the raw wire as no client would send them."""
    hub = await make_hub()
    path = await made(hub)
    port = port_of(hub)
    for header in (
        b"Producer-Id: \xff\xfe\r\nProducer-Epoch: 0\r\nProducer-Seq: 0",
        b"Producer-Id: p\r\nProducer-Epoch: \xd9\xa1\r\nProducer-Seq: 0",
        b"Stream-Seq: \xc3\xa9t\xc3\xa9",  # (a control byte: aiohttp's parser answers 400)
    ):
        request = (
            b"POST /v1/stream/" + path.encode() + b" HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1\r\nConnection: close\r\n"
            + header + b"\r\n\r\n1"
        )  # fmt: skip
        json_error(await exchange(port, request), 400)
    odd = name()
    request = (
        b"PUT /v1/stream/" + odd.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
        b"Content-Type: \xe2\x98\x83/\xff\r\nStream-TTL: \xd9\xa1\r\nConnection: close\r\n\r\n"
    )
    assert "Stream-TTL" in json_error(await exchange(port, request), 400)


@pytest.mark.parametrize(
    "headers",
    [
        {"Producer-Id": "p"},
        {"Producer-Id": "p", "Producer-Epoch": "0"},
        {"Producer-Id": "", "Producer-Epoch": "0", "Producer-Seq": "0"},
        {"Producer-Id": "p", "Producer-Epoch": "-1", "Producer-Seq": "0"},
        {"Producer-Id": "p", "Producer-Epoch": "1.5", "Producer-Seq": "0"},
        {"Producer-Id": "p", "Producer-Epoch": str(2**53), "Producer-Seq": "0"},
        {"Producer-Id": "p", "Producer-Epoch": "0", "Producer-Seq": "+1"},
        {"Producer-Id": "p" * 300, "Producer-Epoch": "0", "Producer-Seq": "0"},
        {"Stream-Seq": ""},
        {"Stream-Seq": "s" * 300},
    ],
)
async def test_bad_producer_headers_are_400(make_hub: MakeHub, headers: dict[str, str]) -> None:
    hub = await make_hub()
    path = await made(hub)
    all_headers = {"Content-Type": "application/json", **headers}
    status, why = await status_of(hub, "POST", f"/v1/stream/{path}", b"1", **all_headers)
    assert status == 400, why
    assert (await status_of(hub, "GET", f"/v1/stream/{path}"))[1] == b"[]"


@pytest.mark.parametrize(
    "headers",
    [
        {"Stream-TTL": "1e3"},
        {"Stream-TTL": "-1"},
        {"Stream-TTL": "01"},
        {"Stream-TTL": "99999999999"},
        {"Stream-Expires-At": "tomorrow"},
        {"Stream-Expires-At": "2030-01-01T00:00:00"},  # no time zone
        {"Stream-Expires-At": "0001-01-01T00:00:00+01:00"},  # year 0 in UTC
        {"Stream-Expires-At": "9999-12-31T23:59:59-14:00"},  # year 10000 in UTC
        {"Stream-Expires-At": "1969-12-31T23:59:59Z"},
        {"Stream-Expires-At": "2030-01-01T00:00:00Z" + "0" * 60},
        {"Stream-TTL": "60", "Stream-Expires-At": "2030-01-01T00:00:00Z"},
    ],
)
async def test_bad_create_headers_are_400(make_hub: MakeHub, headers: dict[str, str]) -> None:
    hub = await make_hub()
    status, why = await status_of(hub, "PUT", f"/v1/stream/{name()}", **headers)
    assert status == 400, why


async def test_bodies_past_the_limits(make_hub: MakeHub) -> None:
    hub = await make_hub(max_body_bytes=4096, max_event_bytes=100, max_batch=3)
    path = await made(hub)
    json = {"Content-Type": "application/json"}
    url = f"/v1/stream/{path}"
    for body, status, words in [
        (b"x" * 5000, 413, "max_body_bytes"),
        (b'"' + b"x" * 200 + b'"', 413, "max_event_bytes"),
        (b"[1, 2, 3, 4]", 413, "max_batch"),
        (b"[" * 300 + b"]" * 300, 400, "nested"),
        (b"{oops", 400, "not valid JSON"),
        (b"[]", 400, "empty JSON array"),
        (b"", 400, "empty"),
    ]:
        got, why = await status_of(hub, "POST", url, body, **json)
        assert got == status and words in why, (body[:20], got, why)

    async def chunked() -> Any:
        for _ in range(10):
            yield b"y" * 1000

    async with hub.session.post(f"{hub.url}{url}", data=chunked(), headers=json) as response:
        assert response.status == 413 and "max_body_bytes" in (await response.json())["error"]
    status, why = await status_of(hub, "POST", url, b"1")  # no Content-Type
    assert status == 400 and "Content-Type" in why
    fork = {"Stream-Forked-From": "/v1/stream/x"}
    status, why = await status_of(hub, "PUT", f"/v1/stream/{name()}", **fork)
    assert status == 501 and "forks" in why
    assert (await status_of(hub, "GET", url))[1] == b"[]"


# -- auth --------------------------------------------------------------------------------------


@pytest.fixture
async def guarded(make_hub: MakeHub) -> HubServer:
    return await make_hub(
        private_channels=["private/*"],
        subscribe_jwt_secret=SECRET,
        publish_tokens=[ADMIN, {"token": SCOPED, "channels": ["jobs/*"]}],
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def grant(*channels: str) -> dict[str, str]:
    claims = {"exp": int(time.time()) + 300, "channels": list(channels)}
    return bearer(jwt.encode(claims, SECRET, algorithm="HS256"))


async def test_writes_need_a_publish_token_within_its_scope(guarded: HubServer) -> None:
    hub = guarded
    job, other = f"jobs/{uuid.uuid4().hex[:8]}", f"other/{uuid.uuid4().hex[:8]}"
    assert (await status_of(hub, "PUT", f"/v1/stream/{job}"))[0] == 401
    assert (await status_of(hub, "PUT", f"/v1/stream/{job}", **bearer("wrong")))[0] == 403
    status, why = await status_of(hub, "PUT", f"/v1/stream/{other}", **bearer(SCOPED))
    assert status == 403 and other in why
    assert (await status_of(hub, "PUT", f"/v1/stream/{job}", **bearer(SCOPED)))[0] == 201
    assert (await status_of(hub, "PUT", f"/v1/stream/{other}", **bearer(ADMIN)))[0] == 201
    text = {"Content-Type": "application/octet-stream"}
    for method in ("POST", "DELETE"):
        status, _ = await status_of(hub, method, f"/v1/stream/{other}", b"x", **text)
        assert status == 401
        status, _ = await status_of(hub, method, f"/v1/stream/{other}", b"x", **text,
                                    **bearer(SCOPED))  # fmt: skip
        assert status == 403
    # no token learns whether a stream exists: the same 401 for one that does not
    assert (await status_of(hub, "DELETE", f"/v1/stream/other/{uuid.uuid4().hex}"))[0] == 401


async def test_private_reads_need_a_grant_or_a_ticket(guarded: HubServer) -> None:
    hub = guarded
    path = f"private/{uuid.uuid4().hex[:8]}"
    json = {"Content-Type": "application/json"}
    assert (await status_of(hub, "PUT", f"/v1/stream/{path}", **json, **bearer(ADMIN)))[0] == 201
    url = f"/v1/stream/{path}"
    for query in ("", "?offset=now&live=long-poll", "?offset=-1&live=sse"):
        assert (await status_of(hub, "GET", url + query))[0] == 401
        assert (await status_of(hub, "GET", url + query, **grant("private/other")))[0] == 403
    assert (await status_of(hub, "HEAD", url))[0] == 401
    missing = f"/v1/stream/private/{uuid.uuid4().hex}"
    assert (await status_of(hub, "GET", missing))[0] == 401  # not 404: nothing is told
    status, body = await status_of(hub, "GET", url, **grant("private/*"))
    assert (status, body) == (200, b"[]")
    assert (await status_of(hub, "HEAD", url, **grant(path)))[0] == 200
    async with hub.session.post(
        f"{hub.url}/tickets", json={"channels": [path]}, headers=bearer(ADMIN)
    ) as response:
        ticket = (await response.json())["ticket"]
    assert (await status_of(hub, "GET", f"{url}?ticket={ticket}"))[0] == 200
    assert (await status_of(hub, "GET", f"{url}?ticket={ticket}"))[0] == 403  # spent
    public = f"jobs/{uuid.uuid4().hex[:8]}"
    assert (await status_of(hub, "PUT", f"/v1/stream/{public}", **bearer(SCOPED)))[0] == 201
    assert (await status_of(hub, "GET", f"/v1/stream/{public}"))[0] == 200


async def test_live_reads_are_limited_per_address(make_hub: MakeHub) -> None:
    hub = await make_hub(subscribe_rate=0.01, subscribe_burst=1, durable_long_poll=0.2)
    path = await made(hub)
    status, _ = await status_of(hub, "GET", f"/v1/stream/{path}?offset=now&live=long-poll")
    assert status == 204
    status, why = await status_of(hub, "GET", f"/v1/stream/{path}?offset=-1&live=sse")
    assert status == 429 and "too many" in why


# -- fuzzing -----------------------------------------------------------------------------------

_HEADERS = [
    "Content-Type",
    "Stream-TTL",
    "Stream-Expires-At",
    "Stream-Closed",
    "Stream-Seq",
    "Producer-Id",
    "Producer-Epoch",
    "Producer-Seq",
    "If-None-Match",
]
_VALUES = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
            max_size=40),
    st.sampled_from(["0", "1", "-1", "true", "2030-01-01T00:00:00Z", "application/json",
                     "text/plain", "9" * 30, "now"]),
)  # fmt: skip
_QUERY = st.dictionaries(
    st.sampled_from(["offset", "live", "cursor", "ticket", "x"]),
    st.one_of(st.text(max_size=25), st.sampled_from(["-1", "now", "sse", "long-poll", "0"])),
    max_size=3,
)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_fuzzed_headers_queries_and_bodies_get_no_5xx() -> None:
    """Arbitrary protocol headers, queries and bodies on every method: never a 5xx, and every
    error a JSON {"error"}; a live read is either a stream or such an error."""
    with (
        running_hub("memory", durable_long_poll=0.1, subscribe_rate=0) as live,
        httpx.Client(base_url=live.url, timeout=20) as client,
    ):

        @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(
            method=st.sampled_from(["PUT", "POST", "GET", "HEAD", "DELETE"]),
            stream=st.sampled_from(["fz/a", "fz/b", "fz/c"]),
            headers=st.dictionaries(st.sampled_from(_HEADERS), _VALUES, max_size=4),
            query=_QUERY,
            body=st.one_of(st.binary(max_size=40), st.sampled_from([b"[]", b'[{"a": 1}]', b""])),
        )
        def check(
            method: str, stream: str, headers: dict[str, str], query: dict[str, str], body: bytes
        ) -> None:
            tried.append(method)
            sent = {k: v.encode("latin-1") for k, v in headers.items() if v.strip(" \t") == v}
            with client.stream(
                method, f"/v1/stream/{stream}", params=query, headers=sent, content=body
            ) as response:
                assert response.status_code < 500, (method, headers, query, body)
                kind = response.headers.get("Content-Type", "").split(";")[0]
                if response.status_code >= 400 and method != "HEAD":
                    assert kind == "application/json", (method, headers, query)
                    assert set(orjson.loads(response.read())) == {"error"}
                elif kind == "text/event-stream":
                    next(response.iter_raw(), b"")  # the head; the stream is left there

        tried: list[str] = []
        check()
    assert len(tried) >= 100 and live.tracebacks() == []
