"""hub.backplane.compat_nats: the one use of nats-py internals, pinned and measured.

The first test fails as soon as a nats-py release moves the outgoing buffer that ``withdraw``
edits (then the fallback is in force, and the pin in pyproject.toml must be looked at). The
second runs the withdrawal through a real nats-server, and also without it (``FALLBACK``), which
measures why the private touch is there: without it, a publish answered 503 is stored later.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from nats.aio.client import Client

from hub.backplane import BackplaneUnavailable, Health, compat_nats
from tests.support.backplane_rig import Rig, draft, nats_settings
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.nats


def test_nats_py_keeps_its_outgoing_buffer_where_withdraw_looks() -> None:
    """``Client._pending`` is a list of bytes and ``_pending_data_size`` their size, and
    ``pending_data_size`` (public) reads the latter: what ``withdraw`` relies on."""
    client = Client()
    assert isinstance(client._pending, list)
    assert isinstance(client._pending_data_size, int)
    client._pending.append(b"PUB x 1\r\n1\r\n")
    client._pending_data_size += 12
    assert client.pending_data_size == 12
    assert compat_nats.withdraw(client, b"PUB x") is True
    assert (client._pending, client.pending_data_size) == ([], 0)
    assert compat_nats.withdraw(client, b"PUB x") is False
    assert compat_nats.WITHDRAWS


@pytest.fixture
async def nats_rig(nats_url: str) -> AsyncIterator[Rig]:
    made = Rig("nats", nats_url, "", defaults=nats_settings(uuid.uuid4().hex[:12]))
    yield made
    await made.close()


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 (the client has no event to wait on)
            await asyncio.sleep(0.01)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("fallback", [False, True], ids=["withdrawn", "fallback"])
async def test_a_publish_that_timed_out_on_a_stalled_link_is_never_stored(
    nats_rig: Rig,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    fallback: bool,
) -> None:
    """A's link to NATS stalls (a proxy holds it) while a publish on c is queued behind ~12 MB
    the socket cannot take: the publish times out (503). Withdrawn, it is never stored, though
    the link moves again and A publishes on c after it. Without the withdrawal it is stored
    after the release: the measured reason for compat_nats."""
    monkeypatch.setattr(compat_nats, "FALLBACK", fallback)
    host, port = nats_rig.url.split("//")[1].split(":")
    proxy = TcpProxy(host, int(port))
    await proxy.start()
    try:
        a, _ = await nats_rig.make(backplane=f"nats://127.0.0.1:{proxy.port}")
        b, _ = await nats_rig.make()
        assert isinstance(a, Health)

        def unsent() -> int:
            return int(a.state().detail["unsent_bytes"])

        first = (await a.publish([draft("c", "first")], None)).ids
        proxy.hold()
        # Tickets as ballast (they expire by themselves): the client writes them to its socket,
        # which fills, so what comes next stays in the client's own buffer.
        ballast = [["x" * 100] * 5000 for _ in range(24)]
        fillers = [
            asyncio.create_task(a.issue_ticket(f"f{i}", c, 1)) for i, c in enumerate(ballast)
        ]
        await asyncio.sleep(0)  # each filler runs to its request: all are in the buffer
        assert unsent() > 5_000_000
        await _until(lambda: unsent() == 0)  # the flusher took them and waits on the socket
        late = asyncio.create_task(a.publish([draft("c", "timed out")], None))
        await _until(lambda: unsent() > 0)
        with pytest.raises(BackplaneUnavailable, match="did not answer"):
            await late
        withdrawn = "a publish that timed out was withdrawn before it was sent"
        assert (withdrawn in caplog.text) is not fallback
        await asyncio.gather(*fillers, return_exceptions=True)
        proxy.release()
        async with asyncio.timeout(20):
            while True:  # the link may be re-established first
                try:
                    after = (await a.publish([draft("c", "after")], None)).ids
                    break
                except BackplaneUnavailable:
                    await asyncio.sleep(0.1)
        stored = [
            e.frame.split(b"data: ")[1].strip()
            for e in (await b.history(["c"], None, 1 << 20)).events
        ]
        expected = [b"first", b"timed out", b"after"] if fallback else [b"first", b"after"]
        assert stored == expected
        assert after and first
    finally:
        await proxy.close()
