"""Races between hub processes on one Durable Stream (shared backplanes: Redis, NATS).

Beside tests/backplane/test_streams.py's contract: two backplane instances on one store write
the same stream at once, and a third one's listener and the history must show one order in which
every check held. No timing is asserted: each round lets the event loop interleave the two
writers differently, and whatever the interleaving, the invariants must hold.
"""

from __future__ import annotations

import asyncio
import random

from hub.backplane import Closing
from hub.backplane.streams import Appended, Outcome, Producer, Streams
from tests.backplane.test_streams import (  # noqa: F401  (shared_rig: a fixture)
    JSON,
    append,
    make,
    position,
    shared_rig,
    stream_ids,
)
from tests.support.backplane_rig import Rig

ROUNDS = 12


async def test_one_producers_retries_from_two_processes_store_each_tuple_once(
    shared_rig: Rig,  # noqa: F811
) -> None:
    """Both processes send the producer's tuples 0..9 in order, as two retrying clients would:
    each tuple is stored once, in order, and the other gets a duplicate (or, ahead of the
    winner, a gap that a client would retry after)."""
    a, store_a, _ = await make(shared_rig)
    _, store_b, _ = await make(shared_rig)
    _, state = await store_a.create_stream("s", JSON, [], False)

    async def send(store: Streams) -> dict[int, list[str]]:
        stored: dict[int, list[str]] = {}
        seq = 0
        while seq < 10:
            result = await append(store, "s", f"{seq}", producer=Producer("p", 0, seq))
            if result.outcome is Outcome.GAP:  # the other process has not stored seq - 1 yet
                await asyncio.sleep(0)
                continue
            assert result.outcome in (Outcome.APPENDED, Outcome.DUPLICATE), result
            if result.outcome is Outcome.APPENDED:
                stored[seq] = result.ids
            seq += 1
        return stored

    by_a, by_b = await asyncio.gather(send(store_a), send(store_b))
    assert not set(by_a) & set(by_b) and sorted({**by_a, **by_b}) == list(range(10))
    stored = {**by_a, **by_b}
    assert await stream_ids(a, "s", state) == [i for seq in range(10) for i in stored[seq]]


async def test_a_close_racing_appends_comes_after_every_stored_one(
    shared_rig: Rig,  # noqa: F811
) -> None:
    """A appends while B closes (through the stream, or the channel's native close): every
    append is stored before the close or refused as CLOSED, never stored after it; C's
    listener gets the stored ones, then the close; the tail is the last stored one."""
    a, store_a, _ = await make(shared_rig)
    b, store_b, _ = await make(shared_rig)
    c, _, recorder = await make(shared_rig)
    assert isinstance(b, Closing)
    shuffle = random.Random(21)
    for round_ in range(ROUNDS):
        channel = f"r{round_}"
        await c.follow([channel])
        _, state = await store_a.create_stream(channel, JSON, [], False)

        async def appends(channel: str = channel) -> list[Appended]:
            done = []
            for n in range(8):
                producer = Producer("p", 0, n // 2) if n % 2 else None
                done.append(await append(store_a, channel, f"{n}", producer=producer))
                await asyncio.sleep(0)
            return done

        async def close(channel: str = channel, round_: int = round_) -> None:
            for _ in range(shuffle.randrange(6)):
                await asyncio.sleep(0)
            if round_ % 2:
                await b.close_channel(channel)
            else:
                closed = await append(store_b, channel, close=True)
                assert closed.outcome is Outcome.APPENDED

        done, _ = await asyncio.gather(appends(), close())
        outcomes = [r.outcome for r in done]
        assert set(outcomes) <= {Outcome.APPENDED, Outcome.CLOSED}, outcomes
        if Outcome.CLOSED in outcomes:  # once closed, closed: no append stored after
            first = outcomes.index(Outcome.CLOSED)
            assert all(o is Outcome.CLOSED for o in outcomes[first:]), outcomes
        stored = [i for r in done for i in r.ids]
        await recorder.wait_for_closed(channel)
        seen = [s for s in recorder.sequence if s.endswith(f":{channel}")]
        assert seen == [*stored, f"closed:{channel}"]
        assert await stream_ids(a, channel, state) == stored
        now = await store_b.stream_state(channel, touch=False)
        assert now is not None and now.closed
        assert now.tail == (position(stored[-1]) if stored else state.tail)
