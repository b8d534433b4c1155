"""Introspection (/channels, /healthz, /metrics) and CORS.

CORS: subscribing is open to every origin by default (``*``), with ``Last-Event-ID`` allowed for
fetch-based polyfills; a configured origin list is echoed exactly with credentials allowed;
publishing is not CORS-open unless ``publish_cors_origins`` says so.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import HubServer, MakeHub
from tests.support.helpers import metric_types, metrics, metrics_text

ORIGIN = "https://app.example"


async def channels_listed(hub: HubServer) -> list[dict[str, Any]]:
    async with hub.session.get(f"{hub.url}/channels") as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        listed = await response.json()
        assert isinstance(listed, list)
        return listed


async def test_channels(hub: HubServer, backplane: str) -> None:
    """/channels lists channels with history or subscribers: name, subscribers, clock, last_id."""
    assert await channels_listed(hub) == []
    await hub.publish("history-only", 1)
    last = await hub.publish("history-only", 2)
    await hub.subscribe("/events?channel=watched&channel=history-only")
    await hub.subscribe("/channels/watched/events")
    await hub.subscribe("/event-stream?city=UTC&sec=60")
    listed = {c["name"]: c for c in await channels_listed(hub)}
    assert listed == {
        "history-only": {
            "name": "history-only",
            "subscribers": 1,
            "clock": False,
            "last_id": last["id"],
        },
        "watched": {"name": "watched", "subscribers": 2, "clock": False, "last_id": None},
        "time/UTC/60": {"name": "time/UTC/60", "subscribers": 1, "clock": True, "last_id": None},
    }
    newest = await hub.publish("watched", 3)
    listed = {c["name"]: c for c in await channels_listed(hub)}
    assert listed["watched"]["last_id"] == newest["id"]


@pytest.mark.any_backplane
async def test_healthz(hub: HubServer) -> None:
    """/healthz answers 200 JSON with status ok."""
    async with hub.session.get(f"{hub.url}/healthz") as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        assert (await response.json())["status"] == "ok"


@pytest.mark.any_backplane
async def test_metrics_names_and_types(hub: HubServer) -> None:
    """/metrics is Prometheus text with the contract's gauges and counters, each typed."""
    async with hub.session.get(f"{hub.url}/metrics") as response:
        assert response.status == 200
        assert response.content_type == "text/plain"
        # Prometheus reads the exposition format's version from the header
        assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    types = await metric_types(hub)
    for name in ("hub_subscribers", "hub_channels", "hub_tickers"):
        assert types.get(name) == "gauge", name
    for name in (
        "hub_events_published_total",
        "hub_events_delivered_total",
        "hub_subscribers_dropped_total",
    ):
        assert types.get(name) == "counter", name
    # every sample line is "<name>[{labels}] <number>" and belongs to a declared family
    for line in (await metrics_text(hub)).splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        float(value)
        family = name.split("{", 1)[0]
        assert any(family == f or family.startswith(f + "_") for f in types), line


async def test_metrics_count(hub: HubServer, backplane: str) -> None:
    """The gauges follow connections and channels; the counters count publishes and deliveries."""
    before = await metrics(hub)
    assert before["hub_subscribers"] == 0 and before["hub_events_published_total"] == 0
    one = await hub.subscribe("/events?channel=a&channel=b&channel=c")
    two = await hub.subscribe("/channels/a/events")
    for data in range(3):
        await hub.publish("a", data)
    await hub.publish("b", "b")
    await one.take(4)
    await two.take(3)
    values = await metrics(hub)
    assert values["hub_subscribers"] == 2  # connections, not channel memberships
    assert values["hub_channels"] == 3
    assert values["hub_tickers"] == 0
    assert values["hub_events_published_total"] == 4
    assert values["hub_events_delivered_total"] == 7
    assert values["hub_subscribers_dropped_total"] == 0


async def test_metrics_count_replayed_deliveries(hub: HubServer, backplane: str) -> None:
    """Frames replayed from history are deliveries too."""
    for data in range(3):
        await hub.publish("a", data)
    stream = await hub.subscribe("/channels/a/events?from=start")
    await stream.take(3)
    values = await metrics(hub)
    assert values["hub_events_published_total"] == 3
    assert values["hub_events_delivered_total"] == 3


# -- CORS --------------------------------------------------------------------------------------


async def preflight(
    hub: HubServer, path: str, method: str, origin: str = ORIGIN, headers: str = ""
) -> tuple[int, dict[str, str]]:
    sent = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        sent["Access-Control-Request-Headers"] = headers
    async with hub.session.options(f"{hub.url}{path}", headers=sent) as response:
        return response.status, dict(response.headers)


def allowed_headers(headers: dict[str, str]) -> set[str]:
    return {h.strip().lower() for h in headers.get("Access-Control-Allow-Headers", "").split(",")}


@pytest.mark.parametrize(
    "path",
    [
        "/channels/a/events",
        "/events?channel=a&channel=b",
        "/event-stream?city=UTC&sec=60",
    ],
    ids=("channel", "events", "event-stream"),
)
@pytest.mark.any_backplane
async def test_subscribe_is_open_to_any_origin(hub: HubServer, path: str) -> None:
    """By default any origin may subscribe (``*``), and a preflight allows Last-Event-ID."""
    stream = await hub.subscribe(path, {"Origin": "https://anywhere.example"})
    assert stream.response.headers["Access-Control-Allow-Origin"] == "*"
    status, headers = await preflight(hub, path, "GET", headers="last-event-id")
    assert 200 <= status < 300
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert "last-event-id" in allowed_headers(headers)
    assert "GET" in headers["Access-Control-Allow-Methods"]


@pytest.mark.any_backplane
async def test_subscribe_origin_list_is_echoed(make_hub: MakeHub) -> None:
    """With a list of origins, a listed one is echoed exactly with credentials; never ``*``."""
    hub = await make_hub(cors_origins=[ORIGIN, "https://other.example"])
    stream = await hub.subscribe("/channels/a/events", {"Origin": ORIGIN})
    headers = stream.response.headers
    assert headers["Access-Control-Allow-Origin"] == ORIGIN
    assert headers["Access-Control-Allow-Credentials"] == "true"
    assert "origin" in {v.strip().lower() for v in headers.get("Vary", "").split(",")}
    status, answer = await preflight(hub, "/channels/a/events", "GET", headers="Last-Event-ID")
    assert 200 <= status < 300
    assert answer["Access-Control-Allow-Origin"] == ORIGIN
    assert answer["Access-Control-Allow-Credentials"] == "true"
    assert "last-event-id" in allowed_headers(answer)


@pytest.mark.any_backplane
async def test_unlisted_origin_gets_no_cors(make_hub: MakeHub) -> None:
    """An origin not in the list gets no Access-Control-Allow-Origin at all."""
    hub = await make_hub(cors_origins=[ORIGIN])
    stream = await hub.subscribe("/channels/a/events", {"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in stream.response.headers
    _, answer = await preflight(hub, "/channels/a/events", "GET", "https://evil.example")
    assert "Access-Control-Allow-Origin" not in answer


@pytest.mark.parametrize("path", ["/channels/a/events", "/publish"], ids=("channel", "batch"))
@pytest.mark.any_backplane
async def test_publish_is_not_cors_open_by_default(hub: HubServer, path: str) -> None:
    """Publishing from a browser page is not allowed unless configured: no CORS headers, and
    a page of another origin is not a loopback publisher
    (tests/private/test_channel_visibility.py)."""
    _, answer = await preflight(hub, path, "POST", headers="content-type")
    assert "Access-Control-Allow-Origin" not in answer
    body: object = {"data": 1} if path != "/publish" else [{"channel": "a", "data": 1}]
    async with hub.session.post(
        f"{hub.url}{path}", json=body, headers={"Origin": ORIGIN}
    ) as response:
        assert response.status == 403
        assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.any_backplane
async def test_publish_cors_when_configured(make_hub: MakeHub) -> None:
    """``publish_cors_origins`` opens publishing to the listed origins, with the needed headers."""
    hub = await make_hub(publish_cors_origins=[ORIGIN])
    status, answer = await preflight(
        hub, "/channels/a/events", "POST", headers="authorization, content-type"
    )
    assert 200 <= status < 300
    assert answer["Access-Control-Allow-Origin"] == ORIGIN
    assert {"authorization", "content-type", "idempotency-key"} <= allowed_headers(answer)
    assert "POST" in answer["Access-Control-Allow-Methods"]
    async with hub.session.post(
        f"{hub.url}/channels/a/events", json={"data": 1}, headers={"Origin": ORIGIN}
    ) as response:
        assert response.status == 202
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    _, other = await preflight(hub, "/publish", "POST", "https://evil.example")
    assert "Access-Control-Allow-Origin" not in other
    # and subscribing keeps its own (default, open) policy
    stream = await hub.subscribe("/channels/a/events", {"Origin": "https://anywhere.example"})
    assert stream.response.headers["Access-Control-Allow-Origin"] == "*"
