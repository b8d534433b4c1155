"""Tags on every publish route (single, batch, NDJSON stream), kept in history on every
backplane and across processes, never on the wire; bad tags are a 400 JSON error naming them."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest

from tests.conftest import HubServer
from tests.support.helpers import frame_of, publish_batch, subscribe_raw
from tests.support.hubs import MakeHubProcess
from tests.support.sse_client import open_stream

EU = {"region": "eu", "tier": "gold"}


async def _stream_publish(hub: HubServer, lines: list[Any]) -> list[dict[str, Any]]:
    body = b"".join(orjson.dumps(line) + b"\n" for line in lines)
    headers = {"Content-Type": "application/x-ndjson"}
    async with hub.session.post(f"{hub.url}/publish/stream", data=body, headers=headers) as r:
        assert r.status == 200
        return [orjson.loads(line) for line in (await r.read()).splitlines()]


async def test_tags_on_every_publish_route(hub: HubServer, backplane: str) -> None:
    """Each route's tagged event reaches a tag-filtered stream; the untagged ones do not."""
    stream = await hub.subscribe("/channels/t/events?tag=region:eu")
    await hub.publish("t", "untagged")
    await hub.publish("t", "single", tags=EU)
    await publish_batch(
        hub, [{"channel": "t", "data": "batch", "tags": EU}, {"channel": "t", "data": "no"}]
    )
    answers = await _stream_publish(
        hub, [{"channel": "t", "data": "no"}, {"channel": "t", "data": "ndjson", "tags": EU}]
    )
    assert all("id" in answer for answer in answers), answers
    assert [m.data for m in await stream.take(3)] == ["single", "batch", "ndjson"]


async def test_the_frame_does_not_change(hub: HubServer, backplane: str) -> None:
    """A tagged event's frame is byte for byte what the same event untagged would be."""
    stream, parser = await subscribe_raw(hub, "/channels/w/events")
    plain = await hub.publish("w", {"a": 1}, event="e")
    tagged = await hub.publish("w", {"a": 1}, event="e", tags=EU)
    await stream.take(2)
    frames = [frame_of(parser.raw, receipt["id"]) for receipt in (plain, tagged)]
    assert frames == [
        f'id: {receipt["id"]}\nevent: e\ndata: {{"a":1}}\n\n'.encode()
        for receipt in (plain, tagged)
    ]


async def test_tags_are_kept_in_history(hub: HubServer, backplane: str) -> None:
    """A resume filters its history by the tags stored with each event."""
    await publish_batch(
        hub,
        [
            {"channel": "h", "data": "eu", "tags": {"region": "eu"}},
            {"channel": "h", "data": "us", "tags": {"region": "us"}},
            {"channel": "h", "data": "none"},
            {"channel": "h", "data": "eu2", "tags": {"tier": "x", "region": "eu"}},
        ],
    )
    stream = await hub.subscribe("/channels/h/events?from=start&tag=region:eu")
    assert [m.data for m in await stream.take(2)] == ["eu", "eu2"]


async def test_tags_in_history_across_processes(
    make_hub_process: MakeHubProcess, backplane: str
) -> None:
    """Published on one hub process, resumed on another: the tags came with the events."""
    if backplane == "memory":
        pytest.skip("one process: the memory backplane is not shared")
    one = await make_hub_process()
    two = await make_hub_process()
    items = [
        {"channel": "x", "data": "eu", "tags": {"region": "eu"}},
        {"channel": "x", "data": "us", "tags": {"region": "us"}},
        {"channel": "x", "data": "eu2", "tags": {"region": "eu"}},
    ]
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{one.url}/publish", json=items) as response:
            assert response.status == 202, await response.text()
        url = f"{two.url}/channels/x/events?from=start&tag=region:eu|mars"
        stream = await open_stream(session, url)
        try:
            assert [m.data for m in await stream.take(2)] == ["eu", "eu2"]
            # and live, published on the first process
            live = [{"channel": "x", "data": "us live", "tags": {"region": "us"}}]
            live.append({"channel": "x", "data": "eu live", "tags": {"region": "eu"}})
            async with session.post(f"{one.url}/publish", json=live) as response:
                assert response.status == 202
            assert (await stream.next()).data == "eu live"
        finally:
            await stream.close()


BAD_TAGS: list[tuple[Any, str]] = [
    ("eu", "tags must be a JSON object"),
    (["region", "eu"], "tags must be a JSON object"),
    ({f"t{i}": "v" for i in range(17)}, "17 tags; at most 16"),
    ({"re:gion": "eu"}, "invalid tag name 're:gion'"),
    ({"": "eu"}, "invalid tag name ''"),
    ({"region": "e u"}, "invalid value of tag 'region'"),
    ({"region": 1}, "invalid value of tag 'region'"),
    ({"region": "x" * 65}, "invalid value of tag 'region'"),
]


@pytest.mark.parametrize(("tags", "message"), BAD_TAGS)
@pytest.mark.any_backplane("a refusal by the route, before any backplane call")
async def test_bad_tags_are_400_on_every_route(hub: HubServer, tags: Any, message: str) -> None:
    async with hub.session.post(
        f"{hub.url}/channels/b/events", json={"data": 1, "tags": tags}
    ) as response:
        assert response.status == 400
        assert message in (await response.json())["error"]
    answer = await publish_batch(hub, [{"channel": "b", "data": 1, "tags": tags}], status=400)
    assert answer["error"].startswith("events[0]: ") and message in answer["error"]
    lines = await _stream_publish(hub, [{"channel": "b", "data": 1, "tags": tags}])
    assert lines[0]["status"] == 400 and message in lines[0]["error"], lines
