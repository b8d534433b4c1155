"""Resume: Last-Event-ID (header or ``?lastEventId=``), ``?from=start``, resets, and the race.

A resumed stream gets every retained event after its id, in order, exactly once, then live
events with no gap and no duplicate. An id the hub cannot resume from exactly is answered with an
``event: reset`` frame (no ``id:`` line), then everything retained, then live: never an HTTP error.
"""

from __future__ import annotations

import asyncio
import random
import urllib.parse
from typing import Any

import orjson
import pytest

from tests.conftest import HubServer, MakeHub
from tests.support.helpers import (
    assert_next_is_marker,
    frame_of,
    position,
    publish_batch,
    publish_many,
    subscribe_raw,
)
from tests.support.race import race
from tests.support.sse_client import Message, Stream


def data_and_ids(messages: list[Message]) -> list[tuple[str, str]]:
    return [(m.data, m.id) for m in messages]


# -- exact resume ------------------------------------------------------------------------------


async def test_last_event_id_header(hub: HubServer, backplane: str) -> None:
    """Last-Event-ID replays every later event of the channel, in order, then continues live."""
    ids = await publish_many(hub, [("c", f"e{i}") for i in range(5)])
    stream = await hub.subscribe("/channels/c/events", {"Last-Event-ID": ids[1]})
    replayed = await stream.take(3)
    assert data_and_ids(replayed) == [("e2", ids[2]), ("e3", ids[3]), ("e4", ids[4])]
    live = await hub.publish("c", "e5")
    assert data_and_ids([await stream.next()]) == [("e5", live["id"])]
    await assert_next_is_marker(hub, "c", stream)


async def test_last_event_id_query_parameter(hub: HubServer, backplane: str) -> None:
    """``?lastEventId=`` (for EventSource polyfills that cannot set headers) works the same."""
    ids = await publish_many(hub, [("c", f"e{i}") for i in range(4)])
    query = urllib.parse.quote(ids[2], safe="")
    stream = await hub.subscribe(f"/channels/c/events?lastEventId={query}")
    assert data_and_ids(await stream.take(1)) == [("e3", ids[3])]
    live = await hub.publish("c", "e4")
    assert data_and_ids([await stream.next()]) == [("e4", live["id"])]
    await assert_next_is_marker(hub, "c", stream)


async def test_resume_from_newest_id_replays_nothing(hub: HubServer, backplane: str) -> None:
    """Resuming from the newest event sends no history and no reset, just what comes next."""
    ids = await publish_many(hub, [("c", "old"), ("c", "newest")])
    stream = await hub.subscribe("/channels/c/events", {"Last-Event-ID": ids[-1]})
    live = await hub.publish("c", "new")
    assert data_and_ids([await stream.next()]) == [("new", live["id"])]


async def test_without_resume_only_live_events(hub: HubServer, backplane: str) -> None:
    """A plain subscribe gets no history: only events published after it."""
    await publish_many(hub, [("c", "before")])
    stream = await hub.subscribe("/channels/c/events")
    live = await hub.publish("c", "after")
    assert data_and_ids([await stream.next()]) == [("after", live["id"])]


async def test_empty_last_event_id_is_no_resume(hub: HubServer, backplane: str) -> None:
    """An empty Last-Event-ID (a client whose id was reset) is no resume: no reset, no history."""
    await publish_many(hub, [("c", "before")])
    stream = await hub.subscribe("/channels/c/events", {"Last-Event-ID": ""})
    live = await hub.publish("c", "after")
    assert data_and_ids([await stream.next()]) == [("after", live["id"])]


async def test_from_start(hub: HubServer, backplane: str) -> None:
    """``?from=start`` replays everything retained (a late subscriber catching up), then live."""
    ids = await publish_many(hub, [("job-9", f"{pct}%") for pct in (10, 50, 100)])
    await hub.publish("other", "not mine")
    stream = await hub.subscribe("/channels/job-9/events?from=start")
    assert data_and_ids(await stream.take(3)) == [
        ("10%", ids[0]),
        ("50%", ids[1]),
        ("100%", ids[2]),
    ]
    live = await hub.publish("job-9", "done")
    assert data_and_ids([await stream.next()]) == [("done", live["id"])]
    await assert_next_is_marker(hub, "job-9", stream)


async def test_from_start_on_empty_channel(hub: HubServer, backplane: str) -> None:
    """``?from=start`` on a channel with no history is simply a live stream, no reset."""
    stream = await hub.subscribe("/channels/fresh/events?from=start")
    live = await hub.publish("fresh", "first")
    assert data_and_ids([await stream.next()]) == [("first", live["id"])]


async def test_last_event_id_beats_from_start(hub: HubServer, backplane: str) -> None:
    """A reconnecting browser's Last-Event-ID takes precedence over the page's ``from=start``."""
    ids = await publish_many(hub, [("c", f"e{i}") for i in range(4)])
    streams = [
        await hub.subscribe("/channels/c/events?from=start", {"Last-Event-ID": ids[2]}),
        await hub.subscribe(
            f"/channels/c/events?from=start&lastEventId={urllib.parse.quote(ids[2])}"
        ),
    ]
    for stream in streams:
        assert data_and_ids(await stream.take(1)) == [("e3", ids[3])]
    await assert_next_is_marker(hub, "c", *streams)


@pytest.mark.any_backplane
async def test_bad_from_value(hub: HubServer) -> None:
    """``from`` only knows ``start``; anything else is a 400 with a JSON error."""
    async with hub.session.get(f"{hub.url}/channels/c/events?from=yesterday") as response:
        assert response.status == 400
        assert "from=start" in (await response.json())["error"]


async def test_resume_with_id_of_another_channel(hub: HubServer, backplane: str) -> None:
    """Positions are comparable across channels: any id says how far a stream got."""
    ids = await publish_many(hub, [("a", "a0"), ("b", "b0"), ("a", "a1"), ("b", "b1")])
    stream = await hub.subscribe("/channels/a/events", {"Last-Event-ID": ids[1]})
    assert data_and_ids(await stream.take(1)) == [("a1", ids[2])]
    await assert_next_is_marker(hub, "a", stream)


async def test_multi_channel_resume(hub: HubServer, backplane: str) -> None:
    """One Last-Event-ID resumes a multi-channel stream exactly, in id order across channels."""
    items = [("a", "a0"), ("b", "b0"), ("c", "c0"), ("a", "a1"), ("b", "b1"), ("a", "a2")]
    ids = await publish_many(hub, items)
    for cut in range(len(ids)):
        stream = await hub.subscribe("/events?channel=a&channel=b", {"Last-Event-ID": ids[cut]})
        expected = [
            (data, ident)
            for (channel, data), ident in zip(items, ids, strict=True)
            if channel != "c" and position(ident) > position(ids[cut])
        ]
        got = await stream.take(len(expected)) if expected else []
        assert data_and_ids(got) == expected, f"resuming from {ids[cut]}"
        assert await stream.quiet(0.05) == []
        await stream.close()


async def test_multi_channel_from_start_and_live(hub: HubServer, backplane: str) -> None:
    """``from=start`` on several channels merges their histories in id order, then goes live."""
    answer = await publish_batch(
        hub,
        [
            {"channel": "b", "data": "b0"},
            {"channel": "a", "data": "a0"},
            {"channel": "b", "data": "b1"},
        ],
    )
    ids = [r["id"] for r in answer["events"]]
    stream = await hub.subscribe("/events?channel=a&channel=b&from=start")
    assert data_and_ids(await stream.take(3)) == [("b0", ids[0]), ("a0", ids[1]), ("b1", ids[2])]
    live = await hub.publish("a", "a1")
    assert data_and_ids([await stream.next()]) == [("a1", live["id"])]


async def test_reconnect_with_the_clients_own_last_id(hub: HubServer, backplane: str) -> None:
    """A client that drops and reconnects with the id it last saw misses nothing, sees no dup."""
    stream = await hub.subscribe("/channels/c/events")
    first = await publish_many(hub, [("c", "1"), ("c", "2")])
    await stream.take(2)
    last_seen = stream.last_event_id
    assert last_seen == first[-1]
    await stream.close()
    missed = await publish_many(hub, [("c", "3"), ("c", "4")])
    again = await hub.subscribe("/channels/c/events", {"Last-Event-ID": last_seen})
    assert data_and_ids(await again.take(2)) == [("3", missed[0]), ("4", missed[1])]
    await assert_next_is_marker(hub, "c", again)


# -- resets ------------------------------------------------------------------------------------


def reset_data(message: Message) -> dict[str, Any]:
    assert message.event == "reset"
    assert not message.has_id, "a reset frame carries no id: line"
    data = orjson.loads(message.data)
    assert isinstance(data, dict)
    assert isinstance(data.get("reason"), str) and data["reason"]
    return data


GARBAGE_IDS = (
    "garbage",
    "-1",
    "1.5",
    ":c",
    "12345678901234567890123:c",
    "x" * 4000,
    "9" * 4000 + ":c",
    "1:c",
    "999999999999999999:c",
    "caf\u00e9",
    "5:c\x00",
    "\r\n",
    "\ud800",
)


@pytest.mark.parametrize(
    "bad_id",
    GARBAGE_IDS,
    ids=(
        "word",
        "negative",
        "fraction",
        "no-position",
        "23-digits",
        "4000-chars",
        "4000-digits",
        "before-this-hub",
        "from-the-future",
        "non-ASCII",
        "NUL",
        "CRLF",
        "lone-surrogate",
    ),
)
async def test_unknown_id_resets(hub: HubServer, backplane: str, bad_id: str) -> None:
    """An unknown, garbage or over-long id is not an HTTP error: reset, all retained, then live."""
    ids = await publish_many(hub, [("c", "e0"), ("c", "e1")])
    query = urllib.parse.quote(bad_id, safe="", errors="surrogatepass")
    stream = await hub.subscribe(f"/channels/c/events?lastEventId={query}")
    assert stream.response.status == 200
    reset = reset_data(await stream.next())
    assert reset["reason"] == "unknown-id"
    assert reset["oldest_id"] == ids[0]
    assert data_and_ids(await stream.take(2)) == [("e0", ids[0]), ("e1", ids[1])]
    live = await hub.publish("c", "e2")
    assert data_and_ids([await stream.next()]) == [("e2", live["id"])]
    await assert_next_is_marker(hub, "c", stream)


@pytest.mark.parametrize(
    "bad_id",
    ["garbage", "x" * 4000, "12345678901234567890123:c", "1:c", "caf\u00e9"],
    ids=("word", "4000-chars", "23-digits", "before-this-hub", "non-ASCII"),
)
async def test_unknown_id_header_resets(hub: HubServer, backplane: str, bad_id: str) -> None:
    """The same through the Last-Event-ID header (sent as UTF-8, as browsers do)."""
    ids = await publish_many(hub, [("c", "e0")])
    header = bad_id.encode().decode("latin-1")  # aiohttp sends header text as latin-1 bytes
    stream = await hub.subscribe("/channels/c/events", {"Last-Event-ID": header})
    assert reset_data(await stream.next())["oldest_id"] == ids[0]
    assert data_and_ids(await stream.take(1)) == [("e0", ids[0])]


async def test_reset_frame_bytes(hub: HubServer, backplane: str) -> None:
    """The reset frame is ``event: reset`` and one JSON ``data:`` line, with no ``id:`` line."""
    ids = await publish_many(hub, [("c", "e0")])
    stream, parser = await subscribe_raw(hub, "/channels/c/events", {"Last-Event-ID": "nonsense"})
    await stream.take(2)
    raw = bytes(parser.raw)
    head, _, rest = raw.partition(b"\n\n")
    assert head == b"retry: 3000"
    reset_frame, _, _ = rest.partition(b"\n\n")
    lines = reset_frame.split(b"\n")
    assert lines[0] == b"event: reset"
    assert len(lines) == 2 and lines[1].startswith(b"data: ")
    assert orjson.loads(lines[1][len(b"data: ") :]) == {"reason": "unknown-id", "oldest_id": ids[0]}
    assert frame_of(raw, ids[0]) == b"id: %b\ndata: e0\n\n" % ids[0].encode()


async def test_reset_keeps_the_clients_last_id(hub: HubServer, backplane: str) -> None:
    """With no id line, a reset leaves the client's last id alone until a real event arrives."""
    stream = await hub.subscribe("/channels/c/events", {"Last-Event-ID": "nonsense"})
    reset = reset_data(await stream.next())
    assert reset["oldest_id"] is None  # nothing retained
    assert stream.last_event_id == ""
    live = await hub.publish("c", "first")
    assert data_and_ids([await stream.next()]) == [("first", live["id"])]


async def test_expired_by_history_size(make_hub: MakeHub, backplane: str) -> None:
    """An id older than the last ``history_size`` events resets, then sends what is retained."""
    hub = await make_hub(history_size=3)
    ids = await publish_many(hub, [("c", f"e{i}") for i in range(6)])
    stream = await hub.subscribe("/channels/c/events", {"Last-Event-ID": ids[1]})
    reset = reset_data(await stream.next())
    assert reset == {"reason": "expired", "oldest_id": ids[3]}
    assert data_and_ids(await stream.take(3)) == [(f"e{i}", ids[i]) for i in (3, 4, 5)]
    live = await hub.publish("c", "e6")
    assert data_and_ids([await stream.next()]) == [("e6", live["id"])]
    await assert_next_is_marker(hub, "c", stream)


async def test_resume_at_the_edge_of_history_is_exact(make_hub: MakeHub, backplane: str) -> None:
    """The newest dropped event is a valid resume point: nothing is missing after it."""
    hub = await make_hub(history_size=3)
    ids = await publish_many(hub, [("c", f"e{i}") for i in range(6)])
    stream = await hub.subscribe("/channels/c/events", {"Last-Event-ID": ids[2]})
    assert data_and_ids(await stream.take(3)) == [(f"e{i}", ids[i]) for i in (3, 4, 5)]
    await assert_next_is_marker(hub, "c", stream)


async def test_history_size_limits_from_start(make_hub: MakeHub, backplane: str) -> None:
    """``from=start`` gets only the retained ``history_size`` newest events of each channel."""
    hub = await make_hub(history_size=2)
    ids = await publish_many(hub, [("a", "a0"), ("b", "b0"), ("a", "a1"), ("a", "a2")])
    stream = await hub.subscribe("/events?channel=a&channel=b&from=start")
    assert data_and_ids(await stream.take(3)) == [("b0", ids[1]), ("a1", ids[2]), ("a2", ids[3])]
    await assert_next_is_marker(hub, "a", stream)


async def test_multi_channel_expired_resets(make_hub: MakeHub, backplane: str) -> None:
    """If one channel of a stream no longer reaches back to the id, the stream is reset."""
    hub = await make_hub(history_size=2)
    ids = await publish_many(hub, [("a", "a0"), ("b", "b0"), ("a", "a1"), ("a", "a2"), ("a", "a3")])
    stream = await hub.subscribe("/events?channel=a&channel=b", {"Last-Event-ID": ids[1]})
    reset = reset_data(await stream.next())
    assert reset == {"reason": "expired", "oldest_id": ids[1]}
    assert data_and_ids(await stream.take(3)) == [("b0", ids[1]), ("a2", ids[3]), ("a3", ids[4])]


async def test_expired_by_history_ttl(make_hub: MakeHub, backplane: str) -> None:
    """Events older than ``history_ttl`` are gone: a resume from before them resets."""
    # 2 s, not 1: "fresh" must still be young when read back, on a loaded machine too (the age
    # limit is the store's own clock on Redis and NATS, so it cannot be injected)
    hub = await make_hub(history_ttl=2)
    ids = await publish_many(hub, [("c", "old0"), ("c", "old1")])
    await asyncio.sleep(2.3)  # let the retained events pass their time to live
    fresh = await publish_many(hub, [("c", "fresh")])
    stream = await hub.subscribe("/channels/c/events", {"Last-Event-ID": ids[0]})
    reset = reset_data(await stream.next())
    assert reset == {"reason": "expired", "oldest_id": fresh[0]}
    assert data_and_ids(await stream.take(1)) == [("fresh", fresh[0])]
    late = await hub.subscribe("/channels/c/events?from=start")
    assert data_and_ids(await late.take(1)) == [("fresh", fresh[0])]
    await assert_next_is_marker(hub, "c", stream, late)


# -- the race ----------------------------------------------------------------------------------


async def test_resume_while_publishes_race(hub: HubServer, backplane: str) -> None:
    """Subscribers replaying history while publishes pour in get each event once, in order.

    Three publishers (single events and batches, on two channels) run while sixteen
    subscribers connect at spread-out moments of the burst, resuming from start or from a
    random earlier id, on one or both channels. Each must get exactly the events after its
    resume point: no gap where the history ends and live begins, and no event twice.
    """

    async def connect(
        index: int, receipts: list[dict[str, Any]], rng: random.Random
    ) -> tuple[Stream, tuple[str, str | None]]:
        path = rng.choice(["/events?channel=a&channel=b", "/channels/a/events"])
        if index % 2:
            start = rng.choice(receipts)["id"]
            return await hub.subscribe(path, {"Last-Event-ID": start}), (path, start)
        from_start = path + ("&" if "?" in path else "?") + "from=start"
        return await hub.subscribe(from_start), (path, None)

    result = await race(hub, connect, seed=2)
    assert result.raced >= 12, "the subscribers did not connect during the publishing burst"
    everything = result.everything
    assert len({r["id"] for r in everything}) == len(everything)
    for joined in result.joined:
        path, start = joined.tag
        channels = {"a", "b"} if "channel=b" in path else {"a"}
        after = -1 if start is None else position(start)
        expected = [
            r["id"] for r in everything if r["channel"] in channels and position(r["id"]) > after
        ]
        received = joined.ids
        assert all(m.event == "message" for m in joined.messages), "no reset for a valid resume"
        assert len(received) == len(set(received)), f"duplicates on {path} from {start}"
        assert received == expected, f"gap or disorder on {path} from {start}"


@pytest.mark.any_backplane
async def test_long_last_event_id_is_a_reset(hub: HubServer) -> None:
    """A Last-Event-ID longer than any id of ours (MAX_LAST_EVENT_ID) is not parsed: the stream
    gets ``reset`` ``unknown-id`` and goes on, never an HTTP error a browser gives up on."""
    await hub.publish("c", "kept")
    stream = await hub.subscribe("/channels/c/events", {"Last-Event-ID": "1" * 600 + ":c"})
    reset = await stream.next()
    assert reset.event == "reset" and orjson.loads(reset.data)["reason"] == "unknown-id"
    assert (await stream.next()).data == "kept"


@pytest.mark.any_backplane  # the memory one: Redis and NATS refuse history_size = 0
async def test_history_size_zero_keeps_nothing_and_delivers_live(make_hub: MakeHub) -> None:
    """``history_size = 0``: every event goes out live and none is kept, also past the log's
    compaction (more than 64 dropped): ``from=start`` then replays nothing."""
    hub = await make_hub(history_size=0)
    live = await hub.subscribe("/channels/c/events")
    ids = await publish_many(hub, [("c", f"e{i}") for i in range(70)])
    assert data_and_ids(await live.take(70)) == [(f"e{i}", ids[i]) for i in range(70)]
    stream = await hub.subscribe("/channels/c/events?from=start")
    last = await hub.publish("c", "after")
    assert data_and_ids([await stream.next()]) == [("after", last["id"])]
