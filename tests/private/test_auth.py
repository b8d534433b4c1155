"""Who may publish: bearer tokens from ``publish_tokens``; with none configured, loopback only.

The hub under test listens on 127.0.0.1, so every client here is a loopback client; the refusal
of non-loopback clients without tokens cannot be exercised from this side of the socket.
"""

from __future__ import annotations

import pytest

from tests.conftest import HubServer, MakeHub
from tests.support.helpers import assert_next_is_marker, publish_batch
from tests.support.raw_http import exchange, json_error, port_of

TOKEN = "s3cret-token-0123456789"
OTHER = "another-token-9876543210"


@pytest.fixture
async def guarded(make_hub: MakeHub) -> HubServer:
    """A hub that requires one of two publish tokens."""
    return await make_hub(publish_tokens=[TOKEN, OTHER])


async def publish_status(
    hub: HubServer, headers: dict[str, str], path: str = "/channels/c/events"
) -> tuple[int, dict[str, str]]:
    body: object = {"data": 1} if path != "/publish" else [{"channel": "c", "data": 1}]
    async with hub.session.post(f"{hub.url}{path}", json=body, headers=headers) as response:
        assert response.content_type == "application/json"
        return response.status, await response.json()


@pytest.mark.parametrize("path", ["/channels/c/events", "/publish"], ids=("channel", "batch"))
@pytest.mark.any_backplane
async def test_missing_token_is_401(guarded: HubServer, path: str) -> None:
    """No Authorization header: 401 with a JSON error saying what to send."""
    status, answer = await publish_status(guarded, {}, path)
    assert status == 401
    assert "missing Authorization: Bearer" in answer["error"]


@pytest.mark.parametrize(
    "header",
    ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", TOKEN],
    ids=("basic", "bearer-alone", "bearer-blank", "token-without-scheme"),
)
@pytest.mark.any_backplane
async def test_malformed_authorization_is_401(guarded: HubServer, header: str) -> None:
    """An Authorization header that is not ``Bearer <token>`` is a 401."""
    status, answer = await publish_status(guarded, {"Authorization": header})
    assert status == 401
    assert "Bearer <token>" in answer["error"]


@pytest.mark.parametrize("path", ["/channels/c/events", "/publish"], ids=("channel", "batch"))
@pytest.mark.parametrize(
    "token",
    ["wrong-token-0123456789", TOKEN[:-1], TOKEN + "x", TOKEN.upper()],
    ids=("other", "prefix", "longer", "case"),
)
@pytest.mark.any_backplane
async def test_wrong_token_is_403(guarded: HubServer, path: str, token: str) -> None:
    """A token that is not configured (even a near miss) is a 403 and publishes nothing."""
    watcher = await guarded.subscribe("/channels/c/events")
    status, answer = await publish_status(guarded, {"Authorization": f"Bearer {token}"}, path)
    assert status == 403
    assert "may not publish" in answer["error"]
    await assert_next_is_marker(guarded, "c", watcher, headers={"Authorization": f"Bearer {TOKEN}"})


@pytest.mark.any_backplane("publish auth is checked by the route")
async def test_right_token_publishes(guarded: HubServer) -> None:
    """Each configured token publishes (202) on both routes; the bearer scheme is case-blind."""
    stream = await guarded.subscribe("/channels/c/events")
    for header in (f"Bearer {TOKEN}", f"Bearer {OTHER}", f"bearer {TOKEN}"):
        status, answer = await publish_status(guarded, {"Authorization": header})
        assert status == 202, answer
    answer = await publish_batch(
        guarded, [{"channel": "c", "data": "batch"}], headers={"Authorization": f"Bearer {OTHER}"}
    )
    assert len(answer["events"]) == 1
    assert [m.data for m in await stream.take(4)] == ["1", "1", "1", "batch"]


@pytest.mark.any_backplane
async def test_subscribing_needs_no_token(guarded: HubServer) -> None:
    """Subscribing stays open when publish tokens are configured."""
    stream = await guarded.subscribe("/channels/c/events")
    assert stream.response.status == 200
    await guarded.publish("c", "hi", headers={"Authorization": f"Bearer {TOKEN}"})
    assert (await stream.next()).data == "hi"


@pytest.mark.any_backplane("publish auth is checked by the route")
async def test_no_tokens_loopback_may_publish(hub: HubServer) -> None:
    """With no tokens configured, a loopback client publishes without any Authorization."""
    assert hub.config.publish_tokens == ()
    stream = await hub.subscribe("/channels/c/events")
    status, answer = await publish_status(hub, {})
    assert status == 202, answer
    assert (await stream.next()).id == answer["id"]


@pytest.mark.parametrize(
    "header",
    [("X-Forwarded-For", "127.0.0.1"), ("Forwarded", "for=127.0.0.1"), ("X-Real-IP", "::1")],
    ids=("x-forwarded-for", "forwarded", "x-real-ip"),
)
@pytest.mark.parametrize("trusted", [[], ["127.0.0.1"]], ids=("untrusted", "trusted-proxy"))
@pytest.mark.any_backplane
async def test_no_tokens_proxied_request_is_not_loopback(
    make_hub: MakeHub, header: tuple[str, str], trusted: list[str]
) -> None:
    """Without tokens, a request that came through a proxy (it carries a proxy's header) is
    never a loopback client, even from 127.0.0.1, even naming a loopback client, even from a
    trusted proxy: a proxy on the same machine would make the whole internet look local."""
    hub = await make_hub(trusted_proxies=trusted)
    status, answer = await publish_status(hub, dict([header]))
    assert status == 403, answer
    assert "loopback clients only (not through a proxy)" in answer["error"]
    status, answer = await publish_status(hub, {})
    assert status == 202, answer


@pytest.mark.any_backplane
async def test_non_utf8_token_is_403(make_hub: MakeHub) -> None:
    """``Authorization: Bearer \\xff\\xfe`` is a wrong token (403 JSON), not a 500."""
    hub = await make_hub(publish_tokens=[TOKEN])
    request = (
        b"POST /channels/c/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Authorization: Bearer \xff\xfe\r\nContent-Type: application/json\r\n"
        b'Content-Length: 11\r\n\r\n{"data": 1}'
    )
    assert json_error(await exchange(port_of(hub), request), 403) == "this token may not publish"
