"""Webhooks through HTTP, to a real receiver (an aiohttp server on 127.0.0.1 in the test):
``channel.occupied`` and ``channel.vacated`` after ``webhook_grace``, signed; a reconnect within
the grace sends nothing; retries on a 500; a receiver that never answers does not slow delivery;
one webhook hub-wide across processes (Redis, NATS); the URL checked at load."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from hub.config import ConfigError, load
from tests.conftest import MakeHub
from tests.support.helpers import eventually, hub_wide_count, metrics
from tests.support.hubs import AiohttpServer, MakeHubProcess
from tests.support.sse_client import open_stream

SECRET = "a-webhook-secret-0123456789"


@dataclass
class Receiver:
    """What the receiver got: each POST's body (parsed) and whether its signature held."""

    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    tries: int = 0
    #: answers to give, in order, before 200 (e.g. [500, 500]); "hang": never answer
    answers: list[int | str] = field(default_factory=list)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [body for body in self.received if body["type"] == kind]


@pytest.fixture
async def receiver(aiohttp_server: AiohttpServer) -> AsyncIterator[Receiver]:
    got = Receiver()

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        got.tries += 1
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert request.headers["X-Ssehub-Signature"] == expected
        assert request.headers["Content-Type"] == "application/json"
        if got.answers:
            answer = got.answers.pop(0)
            if answer == "hang":
                await asyncio.sleep(3600)
            return web.Response(status=int(answer))
        got.received.append(json.loads(body))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = await aiohttp_server(app)
    got.url = str(server.make_url("/hook"))
    yield got


async def _until(check: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    async def holds() -> bool:
        return check()

    await eventually(holds, timeout=timeout, what=what)


async def test_occupied_and_vacated_signed(
    make_hub: MakeHub, backplane: str, receiver: Receiver
) -> None:
    """First subscriber: ``channel.occupied`` after the grace; last one gone: ``vacated``;
    each signed with the secret (the receiver checks it), with the channel and an RFC 3339
    time; counted in /metrics."""
    hub = await make_hub(webhook_url=receiver.url, webhook_secret=SECRET, webhook_grace=0.3)
    stream = await hub.subscribe("/channels/room/events")
    await _until(lambda: len(receiver.received) == 1, what="occupied")
    occupied = receiver.received[0]
    assert occupied["type"] == "channel.occupied"
    assert occupied["channel"] == "room"
    assert occupied["at"].endswith("Z") and "T" in occupied["at"]
    await stream.close()
    await _until(lambda: len(receiver.received) == 2, what="vacated")
    assert receiver.received[1]["type"] == "channel.vacated"
    assert receiver.received[1]["channel"] == "room"
    assert (await metrics(hub))["hub_webhooks_sent_total"] == 2


@pytest.mark.any_backplane(
    "the grace is kept in the process; what is shared hub-wide is test_one_webhook_hub_wide"
)
async def test_a_reconnect_within_the_grace_sends_nothing(
    make_hub: MakeHub, receiver: Receiver
) -> None:
    """A subscriber that leaves and comes back within the grace flaps nothing; one that comes
    and goes within the grace is never told either."""
    hub = await make_hub(webhook_url=receiver.url, webhook_secret=SECRET, webhook_grace=1.5)
    brief = await hub.subscribe("/channels/blink/events")
    await brief.close()
    stream = await hub.subscribe("/channels/room/events")
    await _until(lambda: len(receiver.received) == 1, what="occupied")
    await stream.close()
    stream = await hub.subscribe("/channels/room/events")  # the reconnect
    await asyncio.sleep(2.5)
    assert [(b["type"], b["channel"]) for b in receiver.received] == [("channel.occupied", "room")]
    await stream.close()
    await _until(lambda: len(receiver.received) == 2, what="vacated")


@pytest.mark.any_backplane(
    "the sender's retries; what is shared hub-wide is test_one_webhook_hub_wide"
)
async def test_retries_on_500_and_never_slows_delivery(
    make_hub: MakeHub, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """A receiver that answers 500 twice gets its webhook on the third try (with backoff);
    the failures are counted and logged, the channel escaped, the secret never; meanwhile
    events flow."""
    caplog.set_level(logging.INFO, logger="hub.webhooks")
    receiver.answers = [500, 500]
    hub = await make_hub(webhook_url=receiver.url, webhook_secret=SECRET, webhook_grace=0)
    stream = await hub.subscribe("/channels/busy/events")
    for n in range(5):
        await hub.publish("busy", n)
        assert (await stream.next()).data == str(n)
    await _until(lambda: len(receiver.received) == 1, timeout=15, what="the third try")
    assert receiver.tries == 3
    assert "webhook channel.occupied of 'busy' failed (answered 500), try 1 of 6" in caplog.text
    assert SECRET not in caplog.text
    values = await metrics(hub)
    assert values["hub_webhook_failures_total"] == 2
    assert values["hub_webhooks_sent_total"] == 1
    assert values["hub_webhooks_dropped_total"] == 0


@pytest.mark.any_backplane(
    "the sender's queue; what is shared hub-wide is test_one_webhook_hub_wide"
)
async def test_a_hanging_receiver_does_not_slow_delivery(
    make_hub: MakeHub, receiver: Receiver
) -> None:
    """While the receiver holds the first webhook unanswered, events are delivered at once."""
    receiver.answers = ["hang"]
    hub = await make_hub(webhook_url=receiver.url, webhook_secret=SECRET, webhook_grace=0)
    stream = await hub.subscribe("/channels/busy/events")
    await _until(lambda: receiver.tries == 1, what="the first try")
    for n in range(20):
        await hub.publish("busy", n)
    assert [m.data for m in await stream.take(20, timeout=2)] == [str(n) for n in range(20)]


@pytest.mark.any_backplane
@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"HUB_WEBHOOK_URL": "ftp://example.com/x", "HUB_WEBHOOK_SECRET": SECRET},
         "webhook_url = 'ftp://example.com/x': expected an http:// or https:// URL"),
        ({"HUB_WEBHOOK_URL": "http:///x", "HUB_WEBHOOK_SECRET": SECRET},
         "the URL names no host"),
        ({"HUB_WEBHOOK_URL": "https://example.com/x"}, "webhook_secret is not"),
        ({"HUB_WEBHOOK_URL": "https://e.com/", "HUB_WEBHOOK_SECRET": "short-secret"},
         "webhook_secret = (hidden): a webhook secret must be at least 16 bytes"),
        ({"HUB_WEBHOOK_GRACE": "-1"}, "webhook_grace = '-1': expected 0 to 3600"),
    ],
)  # fmt: skip
def test_settings_are_checked_at_load(settings: dict[str, str], message: str) -> None:
    """A bad webhook setting stops start-up with the key named; the secret is never shown."""
    with pytest.raises(ConfigError) as raised:
        load(path=None, env=settings)
    assert message in str(raised.value)
    assert "short-secret" not in str(raised.value)


@pytest.mark.slow
async def test_one_webhook_hub_wide(
    make_hub_process: MakeHubProcess, backplane: str, receiver: Receiver
) -> None:
    """Two processes: the first subscriber (on one) is the one occupied; a second on the other
    process sends nothing, nor does the first one leaving; the last one leaving, vacated. No
    process logs the secret."""
    if backplane == "memory":
        pytest.skip("one process: nothing is shared")
    settings = {"webhook_url": receiver.url, "webhook_secret": SECRET, "webhook_grace": 1}
    one, two = [await make_hub_process(log_level="debug", **settings) for _ in range(2)]
    async with aiohttp.ClientSession() as session:
        first = await open_stream(session, f"{one.url}/channels/shared/events")
        await _until(lambda: len(receiver.received) == 1, what="occupied")
        # the counts are shared every 2 s and read every 2 s: each step waits until the process
        # that judges next sees the other's subscriber (/channels adds the others' counts)
        await hub_wide_count(session, two.url, "shared", 1)
        second = await open_stream(session, f"{two.url}/channels/shared/events")
        await hub_wide_count(session, one.url, "shared", 2)
        await first.close()
        await asyncio.sleep(5)
        assert [b["type"] for b in receiver.received] == ["channel.occupied"]
        await second.close()
        await _until(lambda: len(receiver.received) == 2, what="vacated")
        assert receiver.received[1]["type"] == "channel.vacated"
    await asyncio.sleep(1)
    assert receiver.tries == 2
    assert SECRET not in one.output + two.output
