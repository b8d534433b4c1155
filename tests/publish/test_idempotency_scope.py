"""Idempotency keys belong to their publisher: a key one token used means nothing to another.

Before, batch keys were shared by every token: a scoped token reusing the admin's key read the
admin's receipt (private channel names), and the admin's later batch with a key the scoped token
had used first answered ``202 Idempotent-Replayed`` with the other's receipt, publishing nothing.
"""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from tests.conftest import HubServer, MakeHub

ADMIN = "admin-token-0123456789"
SCOPED = "scoped-token-0123456789"


def bearer(token: str, key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Idempotency-Key": key}


@pytest.fixture
async def tenants(make_hub: MakeHub) -> HubServer:
    return await make_hub(
        private_channels=["private/*"],
        subscribe_jwt_secret="a-subscribe-secret-of-at-least-32-bytes!",
        publish_tokens=[ADMIN, {"token": SCOPED, "channels": ["jobs/*"]}],
        history_ttl=60,
    )


async def batch(
    hub: HubServer, token: str, key: str, events: list[dict[str, Any]]
) -> tuple[bool, list[dict[str, Any]]]:
    async with hub.session.post(
        f"{hub.url}/publish", json=events, headers=bearer(token, key)
    ) as response:
        answer = await response.json()
        assert response.status == 202, answer
        return response.headers.get("Idempotent-Replayed") == "true", answer["events"]


async def test_a_token_never_reads_another_tokens_receipt(
    tenants: HubServer, backplane: str
) -> None:
    replayed, admin = await batch(tenants, ADMIN, "k-1", [{"channel": "private/7", "data": 1}])
    assert not replayed and admin[0]["channel"] == "private/7"
    replayed, scoped = await batch(tenants, SCOPED, "k-1", [{"channel": "jobs/1", "data": 2}])
    assert not replayed, "the scoped token was handed the admin's receipt"
    assert [e["channel"] for e in scoped] == ["jobs/1"]
    # and each token's own retry is still a replay of its own publish
    replayed, again = await batch(tenants, SCOPED, "k-1", [{"channel": "jobs/1", "data": 2}])
    assert replayed and again == scoped


async def test_a_key_used_first_by_another_token_still_publishes(
    tenants: HubServer, backplane: str
) -> None:
    """The admin's batch is published although the scoped token used its key first."""
    await batch(tenants, SCOPED, "shared", [{"channel": "jobs/2", "data": "first"}])
    stream = await tenants.subscribe("/channels/private/9/events",
                                     {"Authorization": f"Bearer {_grant()}"})  # fmt: skip
    replayed, admin = await batch(tenants, ADMIN, "shared", [{"channel": "private/9", "data": "x"}])
    assert not replayed
    assert admin[0]["channel"] == "private/9"
    message = await stream.next()
    assert message.data == "x" and message.id == admin[0]["id"]


async def test_single_publishes_are_per_publisher_too(tenants: HubServer, backplane: str) -> None:
    first = await tenants.publish("jobs/3", 1, headers=bearer(SCOPED, "one"))
    second = await tenants.publish("jobs/3", 2, headers=bearer(ADMIN, "one"))
    assert first["id"] != second["id"]


def _grant() -> str:
    claims = {"exp": int(time.time()) + 60, "channels": ["private/*"]}
    return jwt.encode(claims, "a-subscribe-secret-of-at-least-32-bytes!", algorithm="HS256")
