"""Tickets per publisher: one token cannot deny tickets to the others.

Before, a scoped token minted 100,000 tickets in ten seconds (no rate on ``POST /tickets``),
and then the admin's ``POST /tickets`` answered ``503 no ticket issued: 100000 tickets are
waiting to be spent`` for the ticket TTL; and the demo's ``POST /demo/answers/<any 32 hex>/
tickets`` minted tickets without any token for answers that were never started.
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from hub.config import load
from hub.ticket_quota import MAX_PUBLISHERS, TicketQuota, TooManyTickets
from tests.conftest import HubServer, MakeHub

ADMIN = "admin-token-0123456789"
SCOPED = "scoped-token-0123456789"
OTHER = "other-token-0123456789"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def post_ticket(
    hub: HubServer, token: str, channel: str
) -> tuple[int, dict[str, Any], dict[str, str]]:
    async with hub.session.post(f"{hub.url}/tickets", json={"channels": [channel]},
                                headers=bearer(token)) as response:  # fmt: skip
        return response.status, await response.json(), dict(response.headers)


@pytest.fixture
async def tenants(make_hub: MakeHub) -> HubServer:
    return await make_hub(
        private_channels=["private/*", "jobs/*"],
        subscribe_jwt_secret="a-subscribe-secret-of-at-least-32-bytes!",
        publish_tokens=[
            ADMIN,
            {"token": SCOPED, "channels": ["jobs/*"]},
            {"token": OTHER, "channels": ["jobs/*"]},
        ],
        max_publisher_tickets=20,
        ticket_rate=1000,
        ticket_burst=1000,
    )


async def test_a_token_at_its_quota_does_not_starve_the_others(
    tenants: HubServer, backplane: str
) -> None:
    for _ in range(20):
        status, answer, _ = await post_ticket(tenants, SCOPED, "jobs/1")
        assert status == 201, answer
    status, answer, headers = await post_ticket(tenants, SCOPED, "jobs/1")
    assert status == 429, answer
    assert "max_publisher_tickets" in answer["error"] and "20" in answer["error"]
    assert 1 <= int(headers["Retry-After"]) <= 30
    assert headers["Content-Type"] == "application/json"
    for token, channel in ((ADMIN, "private/1"), (OTHER, "jobs/2")):
        status, answer, _ = await post_ticket(tenants, token, channel)
        assert status == 201, answer


async def test_ticket_rate_per_token(make_hub: MakeHub, backplane: str) -> None:
    hub = await make_hub(private_channels=["jobs/*"],
                         publish_tokens=[ADMIN, {"token": SCOPED, "channels": ["jobs/*"]}],
                         ticket_rate=0.01, ticket_burst=3)  # fmt: skip
    for _ in range(3):
        assert (await post_ticket(hub, SCOPED, "jobs/1"))[0] == 201
    status, answer, headers = await post_ticket(hub, SCOPED, "jobs/1")
    assert status == 429, answer
    assert "ticket_rate" in answer["error"] and "ticket_burst" in answer["error"]
    assert int(headers["Retry-After"]) >= 1
    assert (await post_ticket(hub, ADMIN, "jobs/1"))[0] == 201


@pytest.mark.any_backplane
async def test_the_quota_and_rate_can_be_turned_off(make_hub: MakeHub) -> None:
    """ticket_rate = 0 with a burst of 1 (so any rate at all would refuse the second) and
    max_publisher_tickets = 0 (off, not "none"): thirty tickets in a row, all issued."""
    hub = await make_hub(private_channels=["jobs/*"], publish_tokens=[ADMIN],
                         ticket_rate=0, ticket_burst=1, max_publisher_tickets=0)  # fmt: skip
    for _ in range(30):
        assert (await post_ticket(hub, ADMIN, "jobs/1"))[0] == 201


async def test_demo_tickets_only_for_answers_that_exist(make_hub: MakeHub, backplane: str) -> None:
    hub = await make_hub(demo_jobs=True, demo_job_seconds=0.5, private_channels=["answer/*"])
    never = secrets.token_hex(16)
    async with hub.session.post(f"{hub.url}/demo/answers/{never}/tickets") as response:
        answer = await response.json()
        assert response.status == 404, answer
        assert "never started" in answer["error"]
    async with hub.session.post(f"{hub.url}/demo/answers") as response:
        started = await response.json()
    async with hub.session.post(f"{hub.url}{started['tickets']}") as response:
        assert response.status == 201
        ticket = (await response.json())["ticket"]
    stream = await hub.subscribe(f"{started['events']}&ticket={ticket}")
    messages = await stream.take(3, timeout=10)
    assert messages[0].event == "token"


async def test_demo_answer_from_another_process_gets_tickets(
    make_hub: MakeHub, backplane: str
) -> None:
    """An answer started on one process (its history in the backplane) is ticketed by another."""
    if backplane == "memory":
        pytest.skip("the memory backplane is one process")
    settings: dict[str, Any] = {"demo_jobs": True, "demo_job_seconds": 0.3,
                                "private_channels": ["answer/*"]}  # fmt: skip
    one, two = await make_hub(**settings), await make_hub(**settings)
    async with one.session.post(f"{one.url}/demo/answers") as response:
        started = await response.json()
    first = await one.subscribe(f"{started['events']}&ticket={await _demo_ticket(one, started)}")
    await first.take(2, timeout=10)
    await _demo_ticket(two, started)


async def _demo_ticket(hub: HubServer, started: dict[str, Any]) -> str:
    async with hub.session.post(f"{hub.url}{started['tickets']}") as response:
        answer = await response.json()
        assert response.status == 201, answer
        return str(answer["ticket"])


@pytest.mark.any_backplane
async def test_demo_tickets_per_answer_are_limited(make_hub: MakeHub) -> None:
    hub = await make_hub(demo_jobs=True, demo_job_seconds=30, private_channels=["answer/*"],
                         max_publisher_tickets=5)  # fmt: skip
    async with hub.session.post(f"{hub.url}/demo/answers") as response:
        started = await response.json()
    for _ in range(5):
        await _demo_ticket(hub, started)
    async with hub.session.post(f"{hub.url}{started['tickets']}") as response:
        answer = await response.json()
        assert response.status == 429, answer
        assert "max_publisher_tickets" in answer["error"]
        assert "Retry-After" in response.headers


def test_publishers_tracked_stay_bounded_and_are_swept_in_bulk() -> None:
    """Past ``MAX_PUBLISHERS`` (the demo's ticket route makes one of any answer id) the quota
    forgets the publishers whose newest ticket is oldest, down to 3/4 of the bound at once, so
    that a full table is not swept again for every new publisher; the newest stay counted."""
    quota = TicketQuota(load(env={}, overrides={"max_publisher_tickets": 1, "ticket_rate": 0}))
    for index in range(MAX_PUBLISHERS):
        quota.take(f"answer:{index}", 300)
    assert quota.tracked() == MAX_PUBLISHERS
    quota.take("answer:new", 300)
    assert quota.tracked() == MAX_PUBLISHERS * 3 // 4 + 1
    for newest in ("answer:new", f"answer:{MAX_PUBLISHERS - 1}"):
        with pytest.raises(TooManyTickets):  # still counted: its one ticket is valid
            quota.take(newest, 300)
    quota.take("answer:0", 300)  # forgotten: a fresh count
