"""Publishing: receipts, batches (all-or-nothing), idempotency, and every kind of bad input.

Every refusal is asserted with its status and a distinctive part of its JSON ``{"error": ...}``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from hub.events import MAX_DATA_DEPTH
from tests.conftest import HubServer, MakeHub
from tests.support.helpers import assert_next_is_marker, metrics, position, publish_batch


async def post(
    hub: HubServer,
    path: str,
    body: bytes | None,
    content_type: str | None = "application/json",
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """POST raw bytes; returns the status and the parsed JSON answer."""
    sent = dict(headers or {})
    if content_type is not None:
        sent["Content-Type"] = content_type
    async with hub.session.post(f"{hub.url}{path}", data=body, headers=sent) as response:
        assert response.content_type == "application/json", await response.text()
        return response.status, await response.json()


async def assert_error(
    hub: HubServer,
    path: str,
    body: Any,
    status: int,
    message: str,
    *,
    raw: bool = False,
    content_type: str | None = "application/json",
    headers: dict[str, str] | None = None,
) -> None:
    data = body if raw else orjson.dumps(body)
    got, answer = await post(hub, path, data, content_type, headers)
    assert got == status, answer
    assert set(answer) == {"error"}, answer
    assert message in answer["error"], answer


async def assert_nothing_published(hub: HubServer, *channels: str, watcher: Any = None) -> None:
    """Nothing was stored or sent for these channels: no last id, no history, no live event.

    Ends by publishing a marker on the first channel (so call it last).
    """
    assert (await metrics(hub))["hub_events_published_total"] == 0
    async with hub.session.get(f"{hub.url}/channels") as response:
        listed = {c["name"]: c for c in await response.json()}
    for name in channels:
        assert listed.get(name, {}).get("last_id") is None, listed[name]
    query = "&".join(f"channel={name}" for name in channels)
    late = await hub.subscribe(f"/events?{query}&from=start")
    streams = [late] if watcher is None else [late, watcher]
    await assert_next_is_marker(hub, channels[0], *streams)
    await late.close()


# -- receipts ----------------------------------------------------------------------------------


async def test_receipt(hub: HubServer, backplane: str) -> None:
    """202 with the id the subscribers see, the channel, and how many subscribers it has here."""
    alone = await hub.publish("job-42", {"pct": 10}, event="progress")
    assert set(alone) == {"id", "channel", "subscribers"}
    assert alone["channel"] == "job-42"
    assert alone["subscribers"] == 0
    assert isinstance(alone["id"], str) and alone["id"]

    first = await hub.subscribe("/channels/job-42/events")
    second = await hub.subscribe("/events?channel=job-42&channel=other")
    receipt = await hub.publish("job-42", {"pct": 40}, event="progress")
    assert receipt["subscribers"] == 2
    assert receipt["id"] != alone["id"]
    for stream in (first, second):
        message = await stream.next()
        assert (message.id, message.event, message.data) == (
            receipt["id"],
            "progress",
            '{"pct":40}',
        )


async def test_ids_increase(hub: HubServer, backplane: str) -> None:
    """Successive publishes get increasing positions, whatever their channel."""
    ids = [(await hub.publish(channel, i))["id"] for i, channel in enumerate("abcabc")]
    positions = [position(ident) for ident in ids]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    assert [ident.split(":", 1)[1] for ident in ids] == list("abcabc")


async def test_channel_names_with_every_allowed_character(hub: HubServer, backplane: str) -> None:
    """All of A-Z a-z 0-9 _ - . : @ / work in a path, for publish and subscribe, up to 200 long."""
    names = ["Az09_-.:@/x", "job/42/step", "a", "x" * 200, "user@example.com", "a:b.c"]
    streams = [await hub.subscribe(f"/channels/{name}/events") for name in names]
    for name, stream in zip(names, streams, strict=True):
        receipt = await hub.publish(name, name)
        assert receipt["channel"] == name
        message = await stream.next()
        assert (message.data, message.id) == (name, receipt["id"])


async def test_data_null_is_data(hub: HubServer, backplane: str) -> None:
    """``"data": null`` is present data (JSON null), not missing data."""
    stream = await hub.subscribe("/channels/n/events")
    await hub.publish("n", None)
    assert (await stream.next()).data == "null"


@pytest.mark.any_backplane("the content type is parsed by the route")
async def test_json_charset_is_accepted(hub: HubServer) -> None:
    """``application/json; charset=utf-8`` is JSON too: accepted, and the event goes out."""
    stream = await hub.subscribe("/channels/c/events")
    status, answer = await post(
        hub, "/channels/c/events", b'{"data": "x"}', "application/json; charset=utf-8"
    )
    assert status == 202, answer
    sent = await stream.next()
    assert (sent.id, sent.data) == (answer["id"], "x")


# -- batches -----------------------------------------------------------------------------------


async def test_batch(hub: HubServer, backplane: str) -> None:
    """POST /publish stores every event in order and answers 202 with one receipt each."""
    a = await hub.subscribe("/channels/a/events")
    both = await hub.subscribe("/events?channel=a&channel=b")
    answer = await publish_batch(
        hub,
        [
            {"channel": "a", "data": 1},
            {"channel": "b", "event": "tick", "data": "two"},
            {"channel": "a", "event": "tock", "data": {"three": 3}},
        ],
    )
    receipts = answer["events"]
    assert [r["channel"] for r in receipts] == ["a", "b", "a"]
    assert [r["subscribers"] for r in receipts] == [2, 1, 2]
    assert [position(r["id"]) for r in receipts] == sorted(position(r["id"]) for r in receipts)
    got = await both.take(3)
    assert [(m.id, m.event, m.data) for m in got] == [
        (receipts[0]["id"], "message", "1"),
        (receipts[1]["id"], "tick", "two"),
        (receipts[2]["id"], "tock", '{"three":3}'),
    ]
    assert [m.id for m in await a.take(2)] == [receipts[0]["id"], receipts[2]["id"]]


async def test_batch_up_to_max_batch(make_hub: MakeHub, backplane: str) -> None:
    """Exactly ``max_batch`` events are accepted."""
    hub = await make_hub(max_batch=3)
    answer = await publish_batch(hub, [{"channel": "a", "data": i} for i in range(3)])
    assert len(answer["events"]) == 3


BAD_BATCHES: tuple[tuple[Any, str], ...] = (
    ([], "non-empty JSON array"),
    ({"channel": "a", "data": 1}, "non-empty JSON array"),
    ([{"channel": "a", "data": 1}, "text"], "events[1]: must be a JSON object"),
    ([{"channel": "a", "data": 1}, {"data": 2}], "events[1]: channel is required"),
    ([{"channel": "a", "data": 1}, {"channel": 5, "data": 2}], "events[1]: channel is required"),
    ([{"channel": "a", "data": 1}, {"channel": "b c", "data": 2}], "invalid channel name"),
    ([{"channel": "a", "data": 1}, {"channel": "b"}], "events[1]: data is required"),
    ([{"channel": "a", "data": 1}, {"channel": "b", "data": 1, "id": "x"}], "unknown field 'id'"),
    ([{"channel": "a", "data": 1}, {"channel": "b", "data": 1, "event": "a b"}], "event name"),
    ([{"channel": "a", "data": 1}, {"channel": "b", "data": 1, "event": "x\ny"}], "event name"),
    ([{"channel": "a", "data": 1}, {"channel": "time/UTC/1", "data": 1}], "clock channel"),
)


@pytest.mark.parametrize(
    ("body", "message"),
    BAD_BATCHES,
    ids=(
        "empty",
        "not-an-array",
        "item-not-object",
        "no-channel",
        "channel-not-string",
        "bad-channel",
        "no-data",
        "unknown-field",
        "bad-event",
        "LF-in-event",
        "clock-channel",
    ),
)
@pytest.mark.any_backplane("a refusal by the route, before any backplane call")
async def test_bad_batch_publishes_nothing(hub: HubServer, body: Any, message: str) -> None:
    """A batch with one bad event is refused whole (400, naming the event); nothing is stored."""
    watcher = await hub.subscribe("/events?channel=a&channel=b")
    await assert_error(hub, "/publish", body, 400, message)
    await assert_nothing_published(hub, "a", "b", watcher=watcher)


@pytest.mark.any_backplane("a refusal by the route, before any backplane call")
async def test_batch_over_max_batch(make_hub: MakeHub) -> None:
    """One event more than ``max_batch`` is a 413 naming the setting; nothing is stored."""
    hub = await make_hub(max_batch=3)
    body = [{"channel": "a", "data": i} for i in range(4)]
    await assert_error(hub, "/publish", body, 413, "max_batch")
    await assert_nothing_published(hub, "a")


@pytest.mark.any_backplane("a refusal by the route, before any backplane call")
async def test_batch_with_oversized_event(make_hub: MakeHub) -> None:
    """One event over ``max_event_bytes`` refuses the whole batch with 413."""
    hub = await make_hub(max_event_bytes=100)
    body = [{"channel": "a", "data": "ok"}, {"channel": "b", "data": "x" * 101}]
    await assert_error(hub, "/publish", body, 413, "max_event_bytes")
    await assert_nothing_published(hub, "a", "b")


# -- sizes -------------------------------------------------------------------------------------


async def test_max_event_bytes(make_hub: MakeHub, backplane: str) -> None:
    """Encoded data of exactly ``max_event_bytes`` passes; one byte more is a 413."""
    hub = await make_hub(max_event_bytes=100)
    stream = await hub.subscribe("/channels/big/events")
    await hub.publish("big", "x" * 100)
    assert (await stream.next()).data == "x" * 100
    await assert_error(hub, "/channels/big/events", {"data": "x" * 101}, 413, "max_event_bytes")
    # the limit is on the encoded data: 34 three-byte characters are 102 bytes
    await assert_error(hub, "/channels/big/events", {"data": "\u20ac" * 34}, 413, "102 bytes")
    # and a JSON value counts as its compact encoding
    await assert_error(hub, "/channels/big/events", {"data": ["y" * 98]}, 413, "max_event_bytes")
    await assert_next_is_marker(hub, "big", stream)


@pytest.mark.any_backplane("a refusal by the route, before any backplane call")
async def test_max_body_bytes(make_hub: MakeHub) -> None:
    """A body over ``max_body_bytes`` is a 413, whether its length is announced or not."""
    hub = await make_hub(max_body_bytes=2048, max_event_bytes=1024)
    body = orjson.dumps([{"channel": "a", "data": "x" * 500} for _ in range(5)])
    assert len(body) > 2048
    await assert_error(hub, "/publish", body, 413, "max_body_bytes", raw=True)

    async def chunks() -> Any:  # no Content-Length: chunked upload
        yield body[:1000]
        yield body[1000:]

    async with hub.session.post(
        f"{hub.url}/publish", data=chunks(), headers={"Content-Type": "application/json"}
    ) as response:
        assert response.status == 413
        assert "max_body_bytes" in (await response.json())["error"]
    await assert_error(
        hub, "/channels/a/events", {"data": "x" * 3000}, 413, "max_body_bytes", raw=False
    )
    await assert_nothing_published(hub, "a")


# -- bad input on the single-event route -------------------------------------------------------


BAD_EVENTS: tuple[tuple[Any, str], ...] = (
    ({}, "data is required"),
    ({"event": "x"}, "data is required"),
    ({"data": 1, "channel": "a"}, "unknown field 'channel'"),
    ({"data": 1, "id": "5"}, "unknown field 'id'"),
    ({"data": 1, "retry": 5}, "unknown field 'retry'"),
    ([{"data": 1}], "must be a JSON object"),
    ("just text", "must be a JSON object"),
    (None, "must be a JSON object"),
    ({"data": 1, "event": ""}, "invalid event name"),
    ({"data": 1, "event": "has space"}, "invalid event name"),
    ({"data": 1, "event": "x" * 65}, "invalid event name"),
    ({"data": 1, "event": 7}, "invalid event name"),
    ({"data": 1, "event": None}, "invalid event name"),
    ({"data": 1, "event": "a\nb"}, "invalid event name"),
    ({"data": 1, "event": "a\rb"}, "invalid event name"),
    ({"data": 1, "event": "a\r\nid: 1"}, "invalid event name"),
    ({"data": 1, "event": "a\x00b"}, "invalid event name"),
    ({"data": 1, "event": "\u00e9v\u00e9nement"}, "invalid event name"),
)


@pytest.mark.parametrize(
    ("body", "message"),
    BAD_EVENTS,
    ids=(
        "empty-object",
        "no-data",
        "unknown-channel-field",
        "unknown-id-field",
        "unknown-retry-field",
        "array",
        "string",
        "null",
        "empty-event",
        "space-in-event",
        "event-too-long",
        "event-not-string",
        "event-null",
        "LF-in-event",
        "CR-in-event",
        "CRLF-injection",
        "NUL-in-event",
        "non-ASCII-event",
    ),
)
@pytest.mark.any_backplane("a refusal by the route, before any backplane call")
async def test_bad_event_is_400(hub: HubServer, body: Any, message: str) -> None:
    """Missing data, unknown fields and bad event names are 400s; nothing reaches subscribers."""
    stream = await hub.subscribe("/channels/c/events")
    await assert_error(hub, "/channels/c/events", body, 400, message)
    await assert_next_is_marker(hub, "c", stream)


async def test_event_name_limits(hub: HubServer, backplane: str) -> None:
    """Event names of 1 and 64 characters from [A-Za-z0-9_.:-] are accepted as they are."""
    stream = await hub.subscribe("/channels/c/events")
    names = ["x", "A-z_0.9:x", "y" * 64]
    for name in names:
        await hub.publish("c", 1, event=name)
    assert [m.event for m in await stream.take(3)] == names


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("has%20space", "has space"),
        ("semi;colon", "semi;colon"),
        ("x" * 201, "xxxxx"),
        ("caf%C3%A9", "caf\u00e9"),
        ("a%0Ab", "a\\nb"),
        ("a%00b", "a\\x00b"),
        ("star*", "star*"),
    ],
    ids=("space", "semicolon", "201-chars", "non-ASCII", "LF", "NUL", "star"),
)
@pytest.mark.any_backplane
async def test_bad_channel_name(hub: HubServer, name: str, shown: str) -> None:
    """A channel name outside 1-200 of [A-Za-z0-9_-.:@/] is a 400 for publish and subscribe."""
    await assert_error(hub, f"/channels/{name}/events", {"data": 1}, 400, "invalid channel name")
    await assert_error(hub, f"/channels/{name}/events", {"data": 1}, 400, shown)
    for path in (f"/channels/{name}/events", f"/events?channel=ok&channel={name}"):
        async with hub.session.get(f"{hub.url}{path}") as response:
            assert response.status == 400
            assert "invalid channel name" in (await response.json())["error"]


@pytest.mark.any_backplane
async def test_clock_channel_is_not_publishable(hub: HubServer) -> None:
    """Only a clock's ticker writes a ``time/...`` channel."""
    await assert_error(hub, "/channels/time/UTC/5/events", {"data": 1}, 400, "clock channel")
    await assert_error(hub, "/channels/time/nonsense/events", {"data": 1}, 400, "clock channel")


@pytest.mark.parametrize(
    ("content_type", "shown"),
    [("text/plain", "text/plain"), ("application/x-www-form-urlencoded", "form"), (None, "")],
    ids=("text", "form", "none"),
)
@pytest.mark.any_backplane
async def test_wrong_content_type_is_415(
    hub: HubServer, content_type: str | None, shown: str
) -> None:
    """Publishing anything but application/json is a 415, on both publish routes."""
    for path in ("/channels/c/events", "/publish"):
        await assert_error(
            hub,
            path,
            b'{"data": 1}',
            415,
            "Content-Type must be application/json",
            raw=True,
            content_type=content_type,
        )
        await assert_error(
            hub, path, b'{"data": 1}', 415, shown, raw=True, content_type=content_type
        )


@pytest.mark.parametrize(
    "body",
    [b"{", b"", b"{'data': 1}", b'{"data": 1} trailing', b"\xff\xfe", b'{"data": NaN}'],
    ids=("truncated", "empty", "single-quotes", "trailing", "not-utf8", "NaN"),
)
@pytest.mark.any_backplane
async def test_bad_json_is_400(hub: HubServer, body: bytes) -> None:
    """A body that is not JSON is a 400 saying so, on both publish routes."""
    for path in ("/channels/c/events", "/publish"):
        await assert_error(hub, path, body, 400, "not valid JSON", raw=True)


@pytest.mark.any_backplane
async def test_unknown_routes_and_methods_are_json(hub: HubServer) -> None:
    """Errors from routing are JSON too: 404 for an unknown path, 405 for a wrong method."""
    async with hub.session.get(f"{hub.url}/nowhere") as response:
        assert response.status == 404
        assert "error" in await response.json()
    async with hub.session.put(f"{hub.url}/channels/c/events", json={"data": 1}) as response:
        assert response.status == 405
        assert "error" in await response.json()


# -- idempotency -------------------------------------------------------------------------------


async def test_idempotency_key(hub: HubServer, backplane: str) -> None:
    """A retried publish with the same key returns the first receipt and publishes once."""
    stream = await hub.subscribe("/channels/c/events")
    key = {"Idempotency-Key": "order-7-paid"}
    first = await hub.publish("c", "paid", headers=key)
    again = await hub.publish("c", "paid", headers=key)
    changed = await hub.publish("c", "different body, same key", headers=key)
    assert again["id"] == first["id"] and changed["id"] == first["id"]
    other = await hub.publish("c", "no key")
    got = await stream.take(2)
    assert [m.data for m in got] == ["paid", "no key"]
    assert [m.id for m in got] == [first["id"], other["id"]]
    assert (await metrics(hub))["hub_events_published_total"] == 2
    await assert_next_is_marker(hub, "c", stream)


async def test_idempotency_key_expires_with_history_ttl(make_hub: MakeHub, backplane: str) -> None:
    """Keys are kept for ``history_ttl``: after that the same key publishes again."""
    hub = await make_hub(history_ttl=2)  # 2, not 1: the replay must come while the key lives
    key = {"Idempotency-Key": "short-lived"}
    first = await hub.publish("c", "x", headers=key)
    assert (await hub.publish("c", "x", headers=key))["id"] == first["id"]
    await asyncio.sleep(2.3)  # past history_ttl
    later = await hub.publish("c", "x", headers=key)
    assert later["id"] != first["id"]
    assert position(later["id"]) > position(first["id"])


async def test_idempotency_keys_are_per_channel(hub: HubServer, backplane: str) -> None:
    """The same key on two channels publishes on both."""
    key = {"Idempotency-Key": "k-1"}
    a = await hub.publish("a", 1, headers=key)
    b = await hub.publish("b", 1, headers=key)
    assert a["id"] != b["id"]
    assert (a["channel"], b["channel"]) == ("a", "b")


async def test_idempotent_batch(hub: HubServer, backplane: str) -> None:
    """A retried batch with the same key returns the first receipts and publishes once."""
    stream = await hub.subscribe("/events?channel=a&channel=b")
    body = [{"channel": "a", "data": 1}, {"channel": "b", "data": 2}]
    key = {"Idempotency-Key": "batch-1"}
    first = await publish_batch(hub, body, headers=key)
    again = await publish_batch(hub, body, headers=key)
    assert [r["id"] for r in again["events"]] == [r["id"] for r in first["events"]]
    assert [m.data for m in await stream.take(2)] == ["1", "2"]
    assert (await metrics(hub))["hub_events_published_total"] == 2
    await assert_next_is_marker(hub, "b", stream)


@pytest.mark.parametrize(
    "key", ["", "k" * 201, "caf\u00e9"], ids=("empty", "too-long", "non-ASCII")
)
@pytest.mark.any_backplane
async def test_bad_idempotency_key(hub: HubServer, key: str) -> None:
    """An unusable Idempotency-Key is a 400, not silently ignored."""
    headers = {"Idempotency-Key": key.encode().decode("latin-1")}
    await assert_error(
        hub, "/channels/c/events", {"data": 1}, 400, "Idempotency-Key", headers=headers
    )


@pytest.mark.any_backplane
async def test_publish_answers_json_content_type(hub: HubServer) -> None:
    """Receipts are application/json."""
    async with hub.session.post(f"{hub.url}/channels/c/events", json={"data": 1}) as response:
        assert response.status == 202
        assert response.content_type == "application/json"
        assert isinstance(await response.json(), dict)


async def test_concurrent_publishes_all_stored(hub: HubServer, backplane: str) -> None:
    """Concurrent publishes each get their own id and all reach the subscriber, once each."""
    stream = await hub.subscribe("/channels/c/events")
    receipts = await asyncio.gather(*(hub.publish("c", i) for i in range(50)))
    ids = {r["id"] for r in receipts}
    assert len(ids) == 50
    got = await stream.take(50)
    assert {m.id for m in got} == ids
    positions = [position(m.id) for m in got]
    assert positions == sorted(positions)


@pytest.mark.parametrize("depth", [MAX_DATA_DEPTH + 1, 600, 1022])
@pytest.mark.any_backplane
async def test_deeply_nested_data_is_400(make_hub: MakeHub, depth: int) -> None:
    """``data`` nested deeper than the encoder writes (but within what the parser reads) is a
    400 naming the limit, single and in a batch, and nothing is published; at the limit: 202."""
    hub = await make_hub()
    nested = "[" * depth + "]" * depth
    for path, body in (
        ("/channels/c/events", f'{{"data": {nested}}}'),
        ("/publish", f'[{{"channel": "c", "data": 1}}, {{"channel": "c", "data": {nested}}}]'),
    ):
        async with hub.session.post(
            f"{hub.url}{path}", data=body, headers={"Content-Type": "application/json"}
        ) as response:
            answer = await response.json()
            assert response.status == 400, answer
            assert f"at most {MAX_DATA_DEPTH} levels" in answer["error"]
    assert "events[1]" in answer["error"]
    ok = "[" * MAX_DATA_DEPTH + "]" * MAX_DATA_DEPTH
    await hub.publish("c", orjson.loads(ok))
    async with hub.session.get(f"{hub.url}/channels") as response:
        assert [c["name"] for c in await response.json() if not c["clock"]] == ["c"]


async def test_a_batch_retried_with_its_key_but_another_body_gets_the_first_receipt(
    hub: HubServer, backplane: str
) -> None:
    """docs/publishing.md: a retry with the same key gets the first receipt, whatever its body."""
    key = {"Idempotency-Key": "batch-retry-1"}
    first = await publish_batch(hub, [{"channel": "a", "data": 1}], headers=key)
    async with hub.session.post(
        f"{hub.url}/publish",
        json=[{"channel": "a", "data": 1}, {"channel": "b", "data": 2}],
        headers=key,
    ) as response:
        assert response.status == 202, await response.text()
        assert response.headers["Idempotent-Replayed"] == "true"
        assert await response.json() == first
