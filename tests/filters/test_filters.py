"""Server-side filters: ``?event=`` and ``?tag=`` on every subscribe URL, live and on resume.

A filtered stream gets only the events its filter lets through, in order, exactly once;
``reset`` and ``close`` always pass; a resume (``Last-Event-ID``, ``from=start``, ``replay=``)
filters its history the same way. Streams asking for the same filter share one group on their
channel, so an event is tested once per distinct filter, not once per subscriber.
"""

from __future__ import annotations

from typing import Any

import pytest

from hub.filters import Filter
from tests.conftest import HubServer
from tests.support.helpers import publish_batch
from tests.support.sse_client import Stream

#: (event, tags, data) published in this order by ``_publish_mix``
MIX: list[tuple[str, dict[str, str] | None, str]] = [
    ("price", {"region": "eu", "tier": "gold"}, "p-eu-gold"),
    ("price", {"region": "us", "tier": "gold"}, "p-us-gold"),
    ("news", {"region": "eu", "tier": "silver"}, "n-eu-silver"),
    ("message", None, "plain"),
    ("news", {"region": "eu"}, "n-eu"),
    ("price", {"region": "eu", "tier": "bronze"}, "p-eu-bronze"),
]

#: a filter's query and the data of MIX it lets through, in order
CASES: list[tuple[str, list[str]]] = [
    ("event=price", ["p-eu-gold", "p-us-gold", "p-eu-bronze"]),
    ("event=news&event=message", ["n-eu-silver", "plain", "n-eu"]),
    ("tag=region:eu", ["p-eu-gold", "n-eu-silver", "n-eu", "p-eu-bronze"]),
    ("tag=region:eu&tag=tier:gold|silver", ["p-eu-gold", "n-eu-silver"]),
    ("event=price&tag=region:eu", ["p-eu-gold", "p-eu-bronze"]),
    ("tag=tier:gold|silver|bronze&event=price", ["p-eu-gold", "p-us-gold", "p-eu-bronze"]),
]


def _items(channel: str) -> list[dict[str, Any]]:
    items = []
    for event, tags, data in MIX:
        item: dict[str, Any] = {"channel": channel, "event": event, "data": data}
        if tags is not None:
            item["tags"] = tags
        items.append(item)
    return items


async def _end_marker(hub: HubServer, channel: str, *streams: Stream) -> None:
    """An event every filter of CASES lets through, so it must come next on each stream."""
    tags = {"region": "eu", "tier": "gold"}
    body = {"channel": channel, "event": "price", "data": "end", "tags": tags}
    # also the events of the other types, so that no filter of CASES is left without one
    also = {"channel": channel, "event": "news", "data": "end", "tags": tags}
    plain = {"channel": channel, "data": "end"}
    await publish_batch(hub, [body, also, plain])
    for stream in streams:
        message = await stream.next()
        assert message.data == "end", f"unexpected {message}"


async def test_live_events_are_filtered(hub: HubServer, backplane: str) -> None:
    """Each filter gets exactly its events, in order; an unfiltered stream gets all."""
    streams = [await hub.subscribe(f"/channels/f/events?{query}") for query, _ in CASES]
    everything = await hub.subscribe("/channels/f/events")
    await publish_batch(hub, _items("f"))
    for stream, (query, expected) in zip(streams, CASES, strict=True):
        got = [m.data for m in await stream.take(len(expected))]
        assert got == expected, query
    assert [m.data for m in await everything.take(len(MIX))] == [d for _, _, d in MIX]
    await _end_marker(hub, "f", *streams)


@pytest.mark.parametrize(("query", "expected"), CASES[2:4])
async def test_resume_filters_the_history(
    hub: HubServer, backplane: str, query: str, expected: list[str]
) -> None:
    """Last-Event-ID, from=start and replay= each give the filtered history, then live."""
    first = await hub.publish("r", "before")
    await publish_batch(hub, _items("r"))
    by_id = await hub.subscribe(f"/channels/r/events?{query}", {"Last-Event-ID": first["id"]})
    from_start = await hub.subscribe(f"/channels/r/events?{query}&from=start")
    replayed = await hub.subscribe(f"/events?channel=r&channel=other&replay=r&{query}")
    for stream in (by_id, from_start, replayed):
        assert [m.data for m in await stream.take(len(expected))] == expected
    await _end_marker(hub, "r", by_id, from_start, replayed)


async def test_event_message_matches_events_without_a_type(hub: HubServer, backplane: str) -> None:
    stream = await hub.subscribe("/channels/m/events?event=message")
    await publish_batch(
        hub, [{"channel": "m", "event": "x", "data": 1}, {"channel": "m", "data": 2}]
    )
    message = await stream.next()
    assert (message.event, message.data) == ("message", "2")


async def test_reset_and_close_always_pass(hub: HubServer, backplane: str) -> None:
    """A filtered stream still gets a reset (an unknown id) and a channel's close."""
    await hub.publish("z", "not for the filter")
    stream = await hub.subscribe("/channels/z/events?event=never", {"Last-Event-ID": "1:z"})
    reset = await stream.next()
    assert reset.event == "reset"
    async with hub.session.post(f"{hub.url}/channels/z/close") as response:
        assert response.status == 200, await response.text()
    close = await stream.next()
    assert close.event == "close"


@pytest.mark.any_backplane(
    "views are grouped in the hub; delivery per filter is checked on every backplane above"
)
async def test_a_filter_is_one_group_whatever_its_parameters_order(hub: HubServer) -> None:
    """Streams with equal filters share one view (one test per event); others have theirs."""
    same = [
        "tag=region:eu&tag=tier:gold|silver&event=price",
        "event=price&tag=tier:silver|gold&tag=region:eu",
    ]
    streams = [await hub.subscribe(f"/channels/g/events?{query}") for query in same]
    streams.append(await hub.subscribe("/channels/g/events?event=news"))
    streams.append(await hub.subscribe("/channels/g/events"))
    channel = hub.hub._channels["g"]
    sizes = sorted(len(group) for group in channel.live.values())
    assert sizes == [1, 1, 2]
    await publish_batch(hub, _items("g"))
    assert [m.data for m in await streams[0].take(1)] == ["p-eu-gold"]
    assert [m.data for m in await streams[1].take(1)] == ["p-eu-gold"]


@pytest.mark.parametrize(
    "query",
    [
        "event=bad%20name",
        "event=",
        "tag=region",
        "tag=:eu",
        "tag=re:gion:eu|",
        "tag=region:e%20u",
        "tag=region:eu||us",
        "&".join(f"tag=t{i}:v" for i in range(17)),
        "&".join(f"event=e{i}" for i in range(33)),
    ],
)
@pytest.mark.any_backplane("a refusal by the route, before any backplane call")
async def test_bad_filters_are_400_json(hub: HubServer, query: str) -> None:
    async with hub.session.get(f"{hub.url}/channels/c/events?{query}") as response:
        assert response.status == 400
        assert response.content_type == "application/json"
        body = await response.json()
    assert ("event=" in body["error"]) or ("tag=" in body["error"]), body


async def test_filters_on_every_subscribe_url(hub: HubServer, backplane: str) -> None:
    """``/events?channel=`` (several channels) takes filters too."""
    stream = await hub.subscribe("/events?channel=a&channel=b&tag=region:eu")
    await publish_batch(
        hub,
        [
            {"channel": "a", "data": "no"},
            {"channel": "b", "data": "yes", "tags": {"region": "eu"}},
            {"channel": "a", "data": "yes too", "tags": {"region": "eu", "x": "y"}},
        ],
    )
    assert [m.data for m in await stream.take(2)] == ["yes", "yes too"]


@pytest.mark.any_backplane("counts Filter calls in Hub.deliver, after the backplane")
async def test_one_test_per_event_and_filter_not_per_subscriber(
    hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """20 streams under 2 filters: each live event is tested twice, whatever the count."""
    calls: list[str] = []
    passes = Filter.passes

    def counted(self: Filter, event: Any) -> bool:
        calls.append(event.id)
        return passes(self, event)

    monkeypatch.setattr(Filter, "passes", counted)
    streams = [
        await hub.subscribe(f"/channels/once/events?{query}")
        for query in ["tag=region:eu", "event=price"] * 10
    ]
    answer = await publish_batch(hub, _items("once")[:1])
    for stream in streams:
        assert (await stream.next()).data == "p-eu-gold"
    assert calls == [answer["events"][0]["id"]] * 2


@pytest.mark.any_backplane("clock ticks come from the ticker, never through the backplane")
async def test_a_clock_is_filtered_by_type(hub: HubServer) -> None:
    """A clock's ticks (type UPDATE, no tags) pass event=UPDATE and no tag= filter."""
    ticks = await hub.subscribe("/event-stream?city=Europe/London&sec=1&event=UPDATE")
    assert (await ticks.next()).event == "UPDATE"  # the first at once
    tagged = await hub.subscribe("/event-stream?city=Europe/London&sec=1&tag=region:eu")
    assert (await ticks.next()).event == "UPDATE"  # a tick went out meanwhile
    assert await tagged.quiet(0.2) == []
