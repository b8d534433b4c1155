"""Who sees which channels, and who counts as a loopback publisher.

- A scoped token lists only the channels it may publish to: before, a token scoped to
  ``jobs/*`` saw ``private/...`` and ``user/8/...`` with their ids and subscriber counts.
- A web page is not a loopback publisher: before, any page open in a browser on the hub's
  machine could ``fetch("http://127.0.0.1:8080/channels")`` (no tokens configured) and read the
  private channel names (``Access-Control-Allow-Origin: *``), or publish.
"""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from tests.conftest import HubServer, MakeHub

SECRET = "a-subscribe-secret-of-at-least-32-bytes!"
ADMIN = "admin-token-0123456789"
SCOPED = "scoped-token-0123456789"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def grant() -> dict[str, str]:
    claims = {"exp": int(time.time()) + 60, "channels": ["*"]}
    return bearer(jwt.encode(claims, SECRET, algorithm="HS256"))


async def names(hub: HubServer, headers: dict[str, str] | None = None) -> dict[str, Any]:
    async with hub.session.get(f"{hub.url}/channels", headers=headers) as response:
        answer = await response.json()
        assert response.status == 200, answer
        return {c["name"]: c for c in answer}


async def test_a_scoped_token_lists_only_its_channels(make_hub: MakeHub, backplane: str) -> None:
    hub = await make_hub(
        private_channels=["private/*", "user/*"],
        subscribe_jwt_secret=SECRET,
        publish_tokens=[ADMIN, {"token": SCOPED, "channels": ["jobs/*", "user/7/*"]}],
        history_ttl=60,
    )
    for channel in ("jobs/1", "user/7/inbox", "user/8/inbox", "private/x", "news"):
        await hub.publish(channel, 1, headers=bearer(ADMIN))
    await hub.subscribe("/channels/user/8/inbox/events", grant())
    assert set(await names(hub, bearer(SCOPED))) == {"jobs/1", "user/7/inbox"}
    admin = await names(hub, bearer(ADMIN))
    assert {"jobs/1", "user/7/inbox", "user/8/inbox", "private/x", "news"} <= set(admin)
    assert admin["user/8/inbox"]["subscribers"] == 1
    public = await names(hub)
    assert {"jobs/1", "news"} <= set(public)
    assert not {"user/7/inbox", "user/8/inbox", "private/x"} & set(public)


EVIL = {"Origin": "https://evil.example"}


@pytest.fixture
async def open_hub(make_hub: MakeHub) -> HubServer:
    """No publish tokens: loopback publishes, as a developer's machine runs it."""
    return await make_hub(private_channels=["private/*"], subscribe_jwt_secret=SECRET)


@pytest.mark.any_backplane  # who may publish is settled before any backplane is asked
async def test_a_web_page_of_another_origin_is_not_a_loopback_publisher(
    open_hub: HubServer,
) -> None:
    hub = open_hub
    await hub.publish("private/secret-name", 1)  # loopback, no Origin: a local tool
    assert "private/secret-name" in await names(hub)
    assert "private/secret-name" not in await names(hub, EVIL)
    for path, body in (("/channels/news/events", {"data": 1}),
                       ("/publish", [{"channel": "news", "data": 1}]),
                       ("/tickets", {"channels": ["private/x"]})):  # fmt: skip
        async with hub.session.post(f"{hub.url}{path}", json=body, headers=EVIL) as response:
            answer = await response.json()
            assert response.status == 403, answer
            assert "publish_cors_origins" in answer["error"]
    async with hub.session.delete(f"{hub.url}/channels/news", headers=EVIL) as response:
        assert response.status == 403


@pytest.mark.any_backplane
async def test_allowed_and_own_origins_still_publish(make_hub: MakeHub) -> None:
    hub = await make_hub(publish_cors_origins=["https://admin.example"])
    await hub.publish("news", 1, headers={"Origin": "https://admin.example"})
    # the hub's own page, reached by a loopback name (the test client's Host is 127.0.0.1:port)
    await hub.publish("news", 2, headers={"Origin": hub.url})
    # a rebound DNS name is not loopback, whatever address it resolved to
    async with hub.session.post(
        f"{hub.url}/channels/news/events", json={"data": 3},
        headers={"Origin": "http://rebound.example", "Host": "rebound.example"},
    ) as response:  # fmt: skip
        assert response.status == 403
