"""The single publish's fast path (``hub.api.publish_single``) answers every request as the
general path does: the same status and JSON message for each bad input, the same ids (up to
their positions), the same history and live frames, the same metrics.

Two hubs with the same limits get the same requests: one takes single publishes on the fast
path (the default), the other on the general one (``publish_cors_origins`` set, which turns the
fast path off and changes nothing for requests without an ``Origin``).
"""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest

from hub.events import MAX_DATA_DEPTH
from tests.conftest import HubServer, MakeHub
from tests.support.helpers import frame_of, metrics, subscribe_raw

LIMITS = {"max_event_bytes": 300, "max_body_bytes": 1024, "max_channels": 6}
JSON = "application/json"
Request = tuple[str, bytes, str, dict[str, str]]


#: (channel, body, Content-Type, headers): good and bad, in an order that matters (a new
#: channel first, a deleted and a closed one, max_channels reached at the end)
REQUESTS: list[Request] = [
    ("fast", b'{"data": {"n": 1}}', JSON, {}),  # a new channel: the general path either way
    ("fast", b'{"data": {"n": 2}}', JSON, {}),
    ("fast", b'{"event": "tick", "data": [1, "two\\nlines", null]}', JSON, {}),
    ("fast", b'{"event": "message", "data": 3.5}', JSON, {}),
    ("fast", b'{"data": null}', JSON, {}),
    ("fast", b'{"data": "a string"}', JSON, {}),
    ("fast", b'{"data": "two\\nlines", "event": "x"}', JSON, {}),
    ("fast", b'{"data": 1, "tags": {"region": "eu"}}', JSON, {}),
    ("fast", b'{"data": 1, "tags": {"bad name": "eu"}}', JSON, {}),
    ("fast", b'{"data": 1, "extra": 2}', JSON, {}),
    ("fast", b'{"event": "tick"}', JSON, {}),
    ("fast", b"[1, 2]", JSON, {}),
    ("fast", b'"text"', JSON, {}),
    ("fast", b"null", JSON, {}),
    ("fast", b"{not json", JSON, {}),
    ("fast", b"", JSON, {}),
    ("fast", b'{"event": 7, "data": 1}', JSON, {}),
    ("fast", b'{"event": "bad name", "data": 1}', JSON, {}),
    ("fast", b'{"event": "' + b"e" * 65 + b'", "data": 1}', JSON, {}),
    ("fast", b'{"data": "' + b"x" * 301 + b'"}', JSON, {}),
    ("fast", b'{"data": ["' + b"x" * 299 + b'"]}', JSON, {}),
    ("fast", b'{"data": "' + b"x" * 1024 + b'"}', JSON, {}),
    (
        "fast",
        b'{"data": ' + b"[" * (MAX_DATA_DEPTH + 1) + b"]" * (MAX_DATA_DEPTH + 1) + b"}",
        JSON,
        {},
    ),
    ("fast", b'{"data": 4}', "application/json; charset=utf-8", {}),
    ("fast", b'{"data": 5}', "text/plain", {}),
    ("fast", b'{"data": 6}', JSON, {"Idempotency-Key": "k1"}),
    ("fast", b'{"data": 7}', JSON, {"Idempotency-Key": "k1"}),  # a replay of the first
    ("fast", b'{"data": 8}', JSON, {"X-Forwarded-For": "10.0.0.1"}),  # not loopback: 403
    ("fast", b'{"data": 9}', JSON, {"Origin": "https://elsewhere.test"}),  # a page: 403
    ("bad name!", b'{"data": 1}', JSON, {}),
    ("time/UTC", b'{"data": 1}', JSON, {}),  # a clock channel: only its ticker writes it
    ("time/UTC", b'{"data": 1, "tags": 3}', JSON, {}),
    ("gone", b'{"data": 1}', JSON, {}),
    ("done", b'{"data": 1}', JSON, {}),
    ("DELETE gone", b"", "", {}),
    ("gone", b'{"data": 2}', JSON, {}),
    ("CLOSE done", b"", "", {}),
    ("done", b'{"data": 2}', JSON, {}),
    ("fast", b'{"data": {"after": "the deletion"}}', JSON, {}),
    ("c4", b'{"data": 1}', JSON, {}),
    ("c5", b'{"data": 1}', JSON, {}),
    ("c6", b'{"data": 1}', JSON, {}),
    ("c7", b'{"data": 1}', JSON, {}),
    ("c8", b'{"data": 1}', JSON, {}),  # a seventh channel with history: over max_channels
    ("c4", b'{"data": 2}', JSON, {}),
]


async def run(hub: HubServer, requests: list[Request]) -> list[tuple[int, Any, dict[str, str]]]:
    """Each request's status, JSON answer and the headers a publish may add."""
    answers = []
    for channel, body, content_type, headers in requests:
        if channel.startswith("DELETE "):
            request = hub.session.delete(f"{hub.url}/channels/{channel[7:]}")
        elif channel.startswith("CLOSE "):
            request = hub.session.post(f"{hub.url}/channels/{channel[6:]}/close")
        else:
            sent = {"Content-Type": content_type, **headers}
            url = f"{hub.url}/channels/{channel}/events"
            request = hub.session.post(url, data=body, headers=sent)
        async with request as response:
            answer = await response.read()
            extra = {k: v for k, v in response.headers.items() if k in ADDED}
            answers.append((response.status, orjson.loads(answer) if answer else None, extra))
    return answers


#: Headers a publish's answer may carry beyond the JSON type
ADDED = ("Idempotent-Replayed", "Retry-After", "Access-Control-Allow-Origin")


def fast_path_in(hub: HubServer) -> bool:
    """Whether the hub's single publishes take the fast path (its handler's name says)."""
    return any(r.handler.__name__ == "publish_single" for r in hub.app.router.routes())


def positions_out(text: str, seen: dict[str, str]) -> str:
    """Positions replaced by their order of appearance: the two hubs' clocks differ."""
    return re.sub(r"\b[0-9]{16,19}\b", lambda m: seen.setdefault(m[0], f"P{len(seen)}"), text)


@pytest.mark.any_backplane("the fast path is the memory backplane's (PublishNow) alone")
async def test_fast_path_answers_as_the_general_path(make_hub: MakeHub) -> None:
    """Every answer, every frame stored and sent live, and the published count agree."""
    fast = await make_hub(**LIMITS)
    general = await make_hub(**LIMITS, publish_cors_origins=("https://example.test",))
    assert fast_path_in(fast) and not fast_path_in(general)
    outcomes = []
    for hub in (fast, general):
        live, parser = await subscribe_raw(hub, "/channels/fast/events")
        answers = await run(hub, REQUESTS)
        last = next(a["id"] for s, a, _ in reversed(answers) if s == 202 and a["channel"] == "fast")
        while b"id: " + last.encode() not in parser.raw:
            parser.feed(await live.response.content.readany())
        frame_of(parser.raw, last)
        history, replayed = await subscribe_raw(hub, "/channels/fast/events?from=start")
        while b"id: " + last.encode() not in replayed.raw:
            replayed.feed(await history.response.content.readany())
        seen: dict[str, str] = {}
        counted = (await metrics(hub))["hub_events_published_total"]
        outcomes.append(
            (
                positions_out(repr(answers), seen),
                positions_out(bytes(parser.raw).decode(), seen),
                positions_out(bytes(replayed.raw).decode(), seen),
                counted,
            )
        )
    assert outcomes[0][0] == outcomes[1][0]
    assert outcomes[0][1:] == outcomes[1][1:]
    statuses = [status for status, _, _ in answers]
    assert {202, 400, 403, 409, 410, 413, 415, 503} <= set(statuses), statuses
    assert statuses.count(202) >= 12, statuses


TOKEN = "a-publish-token-of-32-characters"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WITH_TOKENS: list[Request] = [
    ("news", b'{"data": 1}', JSON, {}),
    ("news", b'{"data": 1}', JSON, {"Authorization": "Bearer not-the-token-at-all"}),
    ("news", b'{"data": 1}', JSON, {"Authorization": "Basic " + TOKEN}),
    ("news", b'{"data": 1}', JSON, AUTH),  # a new channel
    ("news", b'{"data": 2}', JSON, AUTH),
    ("news", b'{"data": 3}', JSON, AUTH),
    ("news", b'{"data": 4}', JSON, AUTH),  # over the burst: 429
    ("news", b'{"data": 5}', JSON, {"Authorization": "Bearer not-the-token-at-all"}),
]


@pytest.mark.any_backplane("the fast path is the memory backplane's (PublishNow) alone")
async def test_fast_path_with_tokens_and_a_rate(make_hub: MakeHub) -> None:
    """With publish tokens and a publish rate, the token checks and the rate's 429 (its
    message and Retry-After) are the general path's, in its order."""
    settings = {"publish_tokens": (TOKEN,), "publish_rate": 0.01, "publish_burst": 3}
    fast = await make_hub(**settings)
    general = await make_hub(**settings, publish_cors_origins=("https://example.test",))
    assert fast_path_in(fast) and not fast_path_in(general)
    outcomes = []
    for hub in (fast, general):
        answers = positions_out(repr(await run(hub, WITH_TOKENS)), {})
        outcomes.append(re.sub(r"retry in [0-9.]+ s|'Retry-After': '[0-9]+'", "WAIT", answers))
        outcomes.append((await metrics(hub))["hub_events_published_total"])
    assert outcomes[0] == outcomes[2] and outcomes[1] == outcomes[3] == 3
    for status in ("401", "403", "429", "202"):
        assert f"({status}, " in outcomes[0], outcomes[0]
