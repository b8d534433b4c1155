"""The hub core without HTTP: ``Hub``, ``Stream`` and ``Writer`` over the real memory backplane,
with a recording sink standing in for the socket.

The HTTP suites check the same guarantees end to end; these pin them where they are made (the
history/live merge, slow readers, deletion order, partial replay, heartbeats, multi-channel
streams, clocks, deadlines, the views of wire dialects), with the races driven on purpose: the
sink can hold any head write until the test lets it go, so publishes land exactly while a
replay is being written.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hub.backplane import Reset
from hub.backplane.memory import MemoryBackplane
from hub.clock_time import SYSTEM_TIME
from hub.config import Config, load
from hub.events import Event, encode_draft
from hub.hub import AllDeleted, Ask, AtCapacity, Hub
from hub.metrics import Metrics
from hub.ticker import clock_sources
from hub.view import SSE, NativeSse, View
from hub.writer import Output, Writer
from tests.support.sse_client import Message, Parser


class Transport:
    """The socket under a sink: records bytes; ``buffered`` is what it claims is unsent."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.buffered = 0
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.data += data

    def is_closing(self) -> bool:
        return self.aborted

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def abort(self) -> None:
        self.aborted = True


class RecordingSink:
    """A ``Sink``: frames raw (as an HTTP/1.0 stream is), head writes optionally held."""

    framed = False

    def __init__(self) -> None:
        self._transport = Transport()
        self.transport: Any = None
        self.opened = asyncio.Event()
        self.hold_writes: set[int] = set()  # head writes (numbered from 1) to hold
        self.writing = asyncio.Event()  # set while a held write waits
        self.release = asyncio.Event()
        self.writes = 0
        self.slow = False  # write_head answers "slow reader"

    async def open(self) -> None:
        self.transport = self._transport
        self.opened.set()

    async def write_head(self, data: bytes, max_pending: int, stall: float) -> bool:
        self.writes += 1
        self._transport.write(data)
        if self.writes in self.hold_writes:
            self.writing.set()
            await self.release.wait()
            self.release.clear()
            self.writing.clear()
        return not self.slow

    def abort(self) -> None:
        self._transport.abort()

    def messages(self) -> list[Message]:
        parser = Parser()
        parser.feed(bytes(self._transport.data))
        return parser.messages

    @property
    def raw(self) -> bytes:
        return bytes(self._transport.data)


def _config(**settings: Any) -> Config:
    return load(path=os.devnull, env={}, overrides={"backplane": "memory", **settings})


@pytest.fixture
async def make_core() -> AsyncIterator[Any]:
    hubs: list[Hub] = []

    async def make(**settings: Any) -> Hub:
        config = _config(**settings)
        hub = Hub(config, MemoryBackplane(config), Metrics(), clock_sources(SYSTEM_TIME))
        await hub.start()
        hubs.append(hub)
        return hub

    yield make
    for hub in hubs:
        await hub.stop()


async def publish(hub: Hub, channel: str, data: str) -> str:
    published = await hub.publish([encode_draft(channel, "message", data, 65536)], None)
    return published.ids[0]


async def settle() -> None:
    """Let the loop run the flush (call_soon) and whatever woke up."""
    for _ in range(3):
        await asyncio.sleep(0)


def start(hub: Hub, ask: Ask, view: View = SSE) -> tuple[RecordingSink, asyncio.Task[None]]:
    sink = RecordingSink()
    return sink, asyncio.create_task(hub.stream(ask, view, sink))


async def live(hub: Hub, ask: Ask, view: View = SSE) -> tuple[RecordingSink, asyncio.Task[None]]:
    sink, task = start(hub, ask, view)
    await sink.opened.wait()
    await settle()
    return sink, task


def ids(sink: RecordingSink) -> list[str]:
    return [message.id for message in sink.messages()]


# -- the history/live merge ------------------------------------------------------------------


async def test_live_stream_gets_each_event_once(make_core: Any) -> None:
    hub = await make_core()
    sink, task = await live(hub, Ask(["a"]))
    assert sink.raw.startswith(b"retry: 3000\n\n")
    sent = [await publish(hub, "a", f"e{i}") for i in range(3)]
    await settle()
    assert ids(sink) == sent
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert hub.census.subscribers == 0


async def test_resume_while_publishes_race_the_replay(make_core: Any) -> None:
    """Events published while the first history page is written are held, then written once
    after the history; live ones follow: no gap, no duplicate, in order."""
    hub = await make_core()
    sent = [await publish(hub, "a", f"old{i}") for i in range(5)]
    sink = RecordingSink()
    sink.hold_writes = {1}
    task = asyncio.create_task(hub.stream(Ask(["a"], last_event_id=sent[1]), SSE, sink))
    await sink.writing.wait()  # the page (old2..old4) is being written
    sent += [await publish(hub, "a", f"race{i}") for i in range(3)]
    sink.release.set()
    await settle()
    sent += [await publish(hub, "a", f"live{i}") for i in range(2)]
    await settle()
    assert ids(sink) == sent[2:]
    task.cancel()


async def test_events_held_during_the_last_head_write_are_written(make_core: Any) -> None:
    """The held events' write may wait for the client; what arrives meanwhile is held again and
    written before the stream goes live (it was left behind when that write had to wait)."""
    hub = await make_core()
    sent = [await publish(hub, "a", "old")]
    sink = RecordingSink()
    sink.hold_writes = {1, 2}
    task = asyncio.create_task(hub.stream(Ask(["a"], last_event_id="0"), SSE, sink))
    await sink.writing.wait()  # the history page
    sent.append(await publish(hub, "a", "held during the page"))
    sink.release.set()
    await asyncio.sleep(0)
    await sink.writing.wait()  # the held event's write, waiting for the client
    sent.append(await publish(hub, "a", "held during the held write"))
    sink.release.set()
    await settle()
    sent.append(await publish(hub, "a", "live"))
    await settle()
    assert [m.data for m in sink.messages()][-3:] == [
        "held during the page", "held during the held write", "live"
    ]  # fmt: skip
    assert ids(sink)[-4:] == sent
    task.cancel()


async def test_unknown_id_gets_a_reset_then_everything(make_core: Any) -> None:
    hub = await make_core()
    sent = [await publish(hub, "a", f"e{i}") for i in range(2)]
    sink, task = await live(hub, Ask(["a"], last_event_id="not-ours"))
    messages = sink.messages()
    assert messages[0].event == "reset"
    assert [m.id for m in messages[1:]] == sent
    task.cancel()


async def test_multi_channel_stream_in_position_order(make_core: Any) -> None:
    hub = await make_core()
    sent = [await publish(hub, name, name) for name in ("a", "b", "a", "c")]
    sink, task = await live(hub, Ask(["a", "b"], replay=("a", "b")))
    sent_ab = [i for i in sent if not i.endswith(":c")]
    more = [await publish(hub, name, name) for name in ("b", "c", "a")]
    await settle()
    assert ids(sink) == sent_ab + [i for i in more if not i.endswith(":c")]
    task.cancel()


async def test_partial_replay_cuts_at_what_was_live(make_core: Any) -> None:
    """replay=b on a stream of a and b: b's history, then both live; what a publish adds while
    b's history is written reaches the stream once, after it."""
    hub = await make_core()
    old = [await publish(hub, "b", "b-old"), await publish(hub, "a", "a-old")]
    sink = RecordingSink()
    sink.hold_writes = {1}
    task = asyncio.create_task(hub.stream(Ask(["a", "b"], replay=("b",)), SSE, sink))
    await sink.writing.wait()
    racing = [await publish(hub, "a", "a-race"), await publish(hub, "b", "b-race")]
    sink.release.set()
    await settle()
    assert ids(sink) == [old[0], *racing]  # a's history is not replayed; nothing twice
    task.cancel()


# -- slow readers ------------------------------------------------------------------------------


async def test_slow_live_reader_is_cut_off_and_forgotten(make_core: Any) -> None:
    hub = await make_core(max_pending_bytes=1024)
    sink, task = await live(hub, Ask(["a"]))
    sink._transport.buffered = 5000  # the client stopped reading
    await publish(hub, "a", "x")
    await settle()
    assert sink._transport.aborted
    await asyncio.wait_for(task, 1)  # the stream's call returned
    assert hub.census.subscribers == 0
    assert hub.census.channel_count == 0


async def test_too_much_held_while_syncing_is_cut_off(make_core: Any) -> None:
    hub = await make_core(max_pending_bytes=1024)
    await publish(hub, "a", "old")
    sink = RecordingSink()
    sink.hold_writes = {1}
    task = asyncio.create_task(hub.stream(Ask(["a"], last_event_id="0"), SSE, sink))
    await sink.writing.wait()
    for _ in range(5):
        await publish(hub, "a", "y" * 400)  # 2 KB held: past the 1 KiB bound
    assert sink._transport.aborted
    sink.release.set()
    await asyncio.wait_for(task, 1)
    assert hub.census.subscribers == 0


async def test_slow_replay_reader_is_cut_off(make_core: Any) -> None:
    hub = await make_core()
    await publish(hub, "a", "old")
    sink = RecordingSink()
    sink.slow = True
    await asyncio.wait_for(hub.stream(Ask(["a"], last_event_id="0"), SSE, sink), 1)
    assert hub.census.subscribers == 0


# -- deletion ------------------------------------------------------------------------------------


async def test_deletion_closes_after_what_was_queued(make_core: Any) -> None:
    hub = await make_core()
    alone, alone_task = await live(hub, Ask(["a"]))
    both, _ = await live(hub, Ask(["a", "b"]))
    last = await publish(hub, "a", "last")
    deletion: Any = hub._deletion
    assert await deletion.delete_channel("a", anyway=True)
    for sink in (alone, both):
        messages = sink.messages()
        assert [m.id for m in messages[:1]] == [last]
        assert (messages[-1].event, messages[-1].data) == ("close", '{"channel":"a"}')
    await asyncio.wait_for(alone_task, 1)  # a stream of that channel alone ends
    after = await publish(hub, "b", "b goes on")
    await settle()
    assert both.messages()[-1].id == after  # one of several carries on
    with pytest.raises(AllDeleted):
        await hub.stream(Ask(["a"]), SSE, RecordingSink())
    partly, _ = await live(hub, Ask(["a", "b"]))
    assert partly.raw.startswith(b'event: close\ndata: {"channel":"a"}\n\nretry: 3000\n\n')


# -- heartbeats, clocks, deadlines, capacity ---------------------------------------------------


def test_heartbeat_reaches_a_stream_quiet_for_two_wake_ups() -> None:
    """The beat task wakes every half heartbeat: a stream that carried bytes since the previous
    wake-up gets no comment, one quiet for two wake-ups does (so never quiet a whole interval
    plus a half)."""
    metrics = Metrics()
    writer = Writer(metrics, 1000)
    loop = asyncio.new_event_loop()
    output = Output(loop.create_future())
    sink = RecordingSink()
    sink.transport = sink._transport
    output.attach(sink)
    output.open_output()  # the head was just written

    def beat() -> bytes:
        before = sink.raw
        writer.beat([output], lambda o: b":\n\n")
        return sink.raw[len(before) :]

    assert beat() == b""  # written since the last wake-up
    assert beat() == b":\n\n"  # quiet for two
    assert beat() == b""
    writer.dirty.clear()
    output.pending = b"frame"
    writer.dirty.append(output)
    writer.flush()
    assert beat() == b""  # the frame counts as bytes
    assert beat() == b":\n\n"
    loop.close()


async def test_clock_stream_gets_the_time_at_once(make_core: Any) -> None:
    hub = await make_core()
    sink, task = await live(hub, Ask(["time/Europe/London/60"]))
    first = sink.messages()
    assert len(first) == 1 and not first[0].has_id
    assert '"timezone":"Europe/London"' in first[0].data
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert hub.census.sources == 0  # the ticker stopped with its last subscriber


async def test_deadline_ends_the_stream(make_core: Any) -> None:
    hub = await make_core()
    sink, task = await live(hub, Ask(["a"], deadline=time.time() + 0.05))
    other, other_task = await live(hub, Ask(["a"]))
    await asyncio.wait_for(task, 2)
    after = await publish(hub, "a", "after")
    await settle()
    assert after not in ids(sink)
    assert ids(other) == [after]
    other_task.cancel()


async def test_at_capacity_before_anything_is_sent(make_core: Any) -> None:
    hub = await make_core(max_subscribers=1)
    _, task = await live(hub, Ask(["a"]))
    sink = RecordingSink()
    with pytest.raises(AtCapacity):
        await hub.stream(Ask(["b"]), SSE, sink)
    assert not sink.opened.is_set()
    task.cancel()


# -- views: a wire dialect's seam -----------------------------------------------------------------


class Shouting(NativeSse):
    """A stand-in dialect: every event's data in capitals; counts its encodings."""

    native = False

    def __init__(self) -> None:
        self.encoded = 0

    def event(self, event: Event) -> bytes:
        self.encoded += 1
        return b"id: " + event.id.encode() + b"\ndata: " + event.frame.split(b"data: ")[1].upper()

    def reset(self, reset: Reset) -> bytes:
        return b"event: reset\ndata: SHOUTED\n\n"


async def test_each_event_is_encoded_once_per_view_not_per_stream(make_core: Any) -> None:
    hub = await make_core()
    shouting = Shouting()
    loud = View(shouting)
    natives = [await live(hub, Ask(["a"])) for _ in range(3)]
    louds = [await live(hub, Ask(["a"]), loud) for _ in range(3)]
    sent = [await publish(hub, "a", "hello"), await publish(hub, "a", "again")]
    await settle()
    assert shouting.encoded == 2  # once per event for the three streams of its view
    for sink, _ in natives:
        assert [(m.id, m.data) for m in sink.messages()] == list(
            zip(sent, ["hello", "again"], strict=True)
        )
    for sink, _ in louds:
        assert [(m.id, m.data) for m in sink.messages()] == list(
            zip(sent, ["HELLO", "AGAIN"], strict=True)
        )
    # a resume in that view is written in it too
    resumed, _ = await live(hub, Ask(["a"], last_event_id=sent[0]), loud)
    assert [m.data for m in resumed.messages()] == ["AGAIN"]
    for _, task in natives + louds:
        task.cancel()
