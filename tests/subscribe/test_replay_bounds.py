"""What a resume may cost the hub: bounded by ``max_pending_bytes`` per subscriber, not by the
history it asks for. Run against a real ``python -m hub serve`` process, whose RSS is read from
/proc, with clients on plain sockets that never read.
"""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.conftest import MakeHub, MakeHubProcess
from tests.support.helpers import RawSocket, eventually, metrics, publish_batch
from tests.support.processes import HubProcess

pytestmark = pytest.mark.slow

CHANNELS = 10
EVENT_BYTES = 60_000
EVENTS_PER_CHANNEL = 84  # 10 x 84 x 60 kB: 50 MB of history
SUBSCRIBERS = 20


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
async def big_hub(backplane: str, make_hub_process: MakeHubProcess) -> HubProcess:
    return await make_hub_process(
        heartbeat=1,  # a replay that makes no progress for 1 s is cut off
        # the kernel's own cut-off (TCP_USER_TIMEOUT, also on a zero window) well after the
        # hub's, so this tests the hub's rule
        tcp_user_timeout=60,
        max_pending_bytes=262144,
        max_event_bytes=65536,
        max_body_bytes=8 << 20,
        history_size=1000,
        clocks="",
        demo_jobs="false",
    )


async def _dropped(session: aiohttp.ClientSession, url: str) -> float:
    async with session.get(f"{url}/metrics") as response:
        for line in (await response.text()).splitlines():
            if line.startswith("hub_subscribers_dropped_total "):
                return float(line.split()[1])
    raise AssertionError("no hub_subscribers_dropped_total")


async def test_resumes_that_never_read_cost_far_less_than_the_history(
    big_hub: HubProcess,
) -> None:
    """20 clients ask for 50 MB of history each and never read: the hub's RSS grows by a small
    fraction of one history (not 20 of them), and each client is cut off as a slow reader."""
    payload = "x" * EVENT_BYTES
    async with aiohttp.ClientSession() as session:
        for _ in range(EVENTS_PER_CHANNEL // 12):
            batch = [{"channel": f"big{c}", "data": payload} for c in range(CHANNELS)] * 12
            body = io.BytesIO(orjson.dumps(batch))  # aiohttp warns about large bytes bodies
            headers = {"Content-Type": "application/json"}
            async with session.post(
                f"{big_hub.url}/publish", data=body, headers=headers
            ) as response:
                assert response.status == 202, await response.text()
        history = CHANNELS * (EVENTS_PER_CHANNEL // 12) * 12 * EVENT_BYTES
        assert history >= 50_000_000
        pid = big_hub.process.pid
        before = _rss(pid)
        path = "/events?from=start&" + "&".join(f"channel=big{c}" for c in range(CHANNELS))
        clients = [
            await RawSocket.connect(big_hub.port, path, receive_buffer=4096)
            for _ in range(SUBSCRIBERS)
        ]
        try:
            peak = before
            deadline = time.monotonic() + 30
            while await _dropped(session, big_hub.url) < SUBSCRIBERS:
                assert time.monotonic() < deadline, "not every slow reader was cut off"
                peak = max(peak, _rss(pid))
                await asyncio.sleep(0.05)
            peak = max(peak, _rss(pid))
            # Each connection was ended by the hub: reading it now reaches its end.
            received = [await client.drain_to_end(timeout=10) for client in clients]
        finally:
            for client in clients:
                client.close()
    growth = peak - before
    print(
        f"history {history / 1e6:.1f} MB; {SUBSCRIBERS} resumes that never read: "
        f"RSS +{growth / 1e6:.1f} MB (before {before / 1e6:.1f} MB), "
        f"{sum(received) / 1e6:.1f} MB reached the clients' sockets"
    )
    assert growth < history / 4, f"RSS grew by {growth} bytes for {history} bytes of history"
    assert all(size < history / 10 for size in received)


async def test_live_events_held_for_a_stalled_replay_are_bounded(
    make_hub: MakeHub, backplane: str
) -> None:
    """A client that stops reading during its replay is cut off once the live events held for
    it pass max_pending_bytes, long before its replay's stall limit (a 30 s heartbeat)."""
    hub = await make_hub(
        heartbeat=30, max_pending_bytes=262_144, max_body_bytes=8 << 20, history_size=1000
    )
    payload = "y" * EVENT_BYTES
    for _ in range(10):  # 8 MB of history: more than the socket buffers take in
        await publish_batch(hub, [{"channel": "held", "data": payload}] * 14)
    stalled = await RawSocket.get(hub, "/channels/held/events?from=start", receive_buffer=4096)

    async def subscribers(count: int) -> bool:
        return hub.hub.census.subscribers == count

    try:
        await eventually(lambda: subscribers(1))
        # The response's head comes once the backplane follows the channel: live events
        # published before that would be history to this replay, not held for it (and then the
        # replay's own stall limit, 30 s, would cut it off instead).
        await stalled.read_until(b"\r\n\r\n", timeout=10)
        started = time.monotonic()
        for _ in range(6):  # 360 kB of live events while the replay waits
            await hub.publish("held", payload)
        await eventually(lambda: subscribers(0), timeout=10)
        assert time.monotonic() - started < 10
        assert (await metrics(hub))["hub_subscribers_dropped_total"] == 1
    finally:
        stalled.close()
