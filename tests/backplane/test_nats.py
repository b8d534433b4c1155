"""What only the NATS backplane has: subjects for channel names, the server version check, its
settings, one wildcard consumer for many channels, a consumer made anew on each join, the
atomic batch limit, and channels trimmed while an instance was cut off. The shared contract,
several instances and an unreachable server included, is tests/backplane/test_backplane.py
(its ``shared_rig`` runs on Redis and NATS)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hub.backplane import (
    BackplaneFull,
    Health,
    open_backplane,
)
from hub.backplane.nats_link import Subjects
from hub.backplane.nats_settings import NatsSettings
from hub.config import ConfigError, load
from tests.support.backplane_rig import Rig, draft, nats_settings
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.nats

BIG = 1 << 20


@pytest.fixture
async def nats_rig(nats_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Rig]:
    monkeypatch.setattr("hub.backplane.nats_presence.COUNTS_INTERVAL", 0.1)
    made = Rig("nats", nats_url, "", defaults=nats_settings(uuid.uuid4().hex[:12]))
    yield made
    await made.close()


async def _until(condition: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 (state() has no event to wait on)
            await asyncio.sleep(0.02)


def test_channel_names_become_one_subject_token_reversibly() -> None:
    """Every allowed character survives; '.' and the other specials never reach the subject."""
    subjects = Subjects("ssehub.ch")
    names = ["a", "news.eu/fr", "user@host:1", "_d", "__", "a_b", "x.y_dz", "A-Z_09.:@/"]
    tokens = set()
    for name in names:
        subject = subjects.of(name)
        token = subject.removeprefix("ssehub.ch.")
        assert not set(token) & set(".:@/*> "), token
        assert subjects.channel(subject) == name
        tokens.add(token)
    assert len(tokens) == len(names)
    assert subjects.of("news.eu/fr") == "ssehub.ch.news_deu_sfr"
    assert subjects.channel("other.prefix.x") is None


def test_settings_and_their_errors(tmp_path: Any) -> None:
    """nats_* settings from the environment; bad ones name the key."""
    creds = tmp_path / "hub.creds"
    creds.write_text("x")
    env = {"HUB_NATS_STREAM": "events", "HUB_NATS_SUBJECT_PREFIX": "app.sse"}
    settings = load(path=os.devnull, env=env).section(NatsSettings)
    assert (settings.stream, settings.subject_prefix) == ("events", "app.sse")
    with_creds = {"HUB_NATS_CREDS": str(creds)}
    if importlib.util.find_spec("nkeys") is None:  # nats-py reads the file with it, at connect
        with pytest.raises(ConfigError, match=r"nats_creds = .*: .* needs the nkeys package"):
            load(path=os.devnull, env=with_creds)
    else:
        assert load(path=os.devnull, env=with_creds).section(NatsSettings).creds == str(creds)
    defaults = load(path=os.devnull, env={}).section(NatsSettings)
    assert (defaults.stream, defaults.subject_prefix, defaults.creds) == ("ssehub", "ssehub.ch", "")
    for key, bad, message in [
        ("HUB_NATS_STREAM", "a.b", "nats_stream = 'a.b': expected a JetStream stream name"),
        ("HUB_NATS_SUBJECT_PREFIX", "a.>", "nats_subject_prefix = 'a.>': expected NATS subject"),
        ("HUB_NATS_SUBJECT_PREFIX", "a..b", "nats_subject_prefix = 'a..b'"),
        ("HUB_NATS_CREDS", str(tmp_path / "none"), "nats_creds = .*: no such file"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load(path=os.devnull, env={key: bad})
    assert load(path=os.devnull, env={"HUB_BACKPLANE": "tls://nats.example:4222"}).backplane


async def _old_server(version: str) -> tuple[asyncio.Server, int]:
    """A fake NATS server that says it is ``version`` and answers PING (all the client needs)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        info = f'{{"server_id":"fake","version":"{version}","proto":1,"headers":true,'
        writer.write(f'INFO {info}"max_payload":1048576}}\r\n'.encode())
        with contextlib.suppress(ConnectionError):
            while line := await reader.readline():
                if line.startswith(b"PING"):
                    writer.write(b"PONG\r\n")
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


class _Quiet:
    def deliver(self, events: Any) -> None:
        pass

    def lost(self, channel: str) -> None:
        pass


async def test_refuses_a_server_older_than_2_12() -> None:
    """An older nats-server silently ignores what the guarantees need: refuse, naming it."""
    server, port = await _old_server("2.9.25")
    try:
        config = load(path=os.devnull, env={}, overrides={"backplane": f"nats://127.0.0.1:{port}"})
        backplane = open_backplane(config)
        with pytest.raises(ConfigError, match=r"nats-server 2\.9\.25 is too old.*2\.12 or newer"):
            await backplane.start(_Quiet())
        await backplane.close()
    finally:
        server.close()


async def test_many_followed_channels_read_through_one_wildcard_consumer(
    nats_rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past MAX_FILTERED followed channels the consumer takes every channel: the unfollowed
    ones are still not delivered, the followed ones still once each, in order."""
    monkeypatch.setattr("hub.backplane.nats_reader.MAX_FILTERED", 1)
    a, _ = await nats_rig.make()
    b, recorder = await nats_rig.make()
    await b.follow(["x", "y"])
    ids = [(await a.publish([draft(c)], None)).ids[0] for c in ["x", "z", "y", "x", "z"] * 4]
    wanted = [i for i in ids if not i.endswith(":z")]
    await recorder.wait_for(wanted)
    await asyncio.sleep(0.1)
    assert recorder.ids() == wanted


async def test_joins_during_traffic_lose_and_double_nothing(nats_rig: Rig) -> None:
    """Channels joined one after another while events of a followed channel keep coming: each
    join makes the consumer anew, and the followed channel's events still arrive exactly once,
    in order; each joined channel gets exactly its events above its frontier."""
    a, _ = await nats_rig.make()
    b, recorder = await nats_rig.make()
    await b.follow(["x"])

    async def traffic() -> list[str]:
        ids: list[str] = []
        for n in range(300):
            ids += (await a.publish([draft("x", n), draft(f"j{n % 20}", n)], None)).ids
        return ids

    running = asyncio.create_task(traffic())
    frontiers: dict[str, int] = {}
    for n in range(20):
        await asyncio.sleep(0.01)
        frontiers[f"j{n}"] = await b.follow([f"j{n}"])
    ids = await running
    xs = [i for i in ids if i.endswith(":x")]
    joined = [
        i for i in ids if not i.endswith(":x") and int(i.split(":")[0]) > frontiers[i.split(":")[1]]
    ]
    await recorder.wait_for(xs + joined)
    await asyncio.sleep(0.2)
    assert recorder.ids(["x"]) == xs
    assert sorted(recorder.ids([f"j{n}" for n in range(20)])) == sorted(joined)
    got = [int(i.split(":")[0]) for i in recorder.ids()]
    assert got == sorted(got)


async def test_batches_up_to_the_atomic_limit(nats_rig: Rig) -> None:
    """A batch is one atomic JetStream batch (at most 1000 messages; a keyed one also stores its
    record): 1000 events go, 1000 with a key are refused naming the limit and store nothing."""
    backplane, _ = await nats_rig.make()
    whole = await backplane.publish([draft(f"c{i % 7}") for i in range(1000)], None)
    assert len(whole.ids) == 1000
    with pytest.raises(BackplaneFull, match=r"at most 1000 messages .* 999 events with an Idem"):
        await backplane.publish([draft("d") for _ in range(1000)], "too-many")
    keyed = await backplane.publish([draft("d") for _ in range(999)], "just-right")
    assert len(keyed.ids) == 999
    pages = [await backplane.history(["d"], None, BIG)]
    while pages[-1].more:
        last = pages[-1].events[-1].position
        pages.append(await backplane.history(["d"], last, BIG, continued=True))
    assert [e.id for page in pages for e in page.events] == keyed.ids


async def test_events_trimmed_while_cut_off_end_that_channel(nats_rig: Rig) -> None:
    """A is cut off (through a proxy) while B publishes more than history_size events on c:
    once back, A reports c lost (its streams end, browsers resume and get their reset), goes
    on delivering, and d, which lost nothing, is not reported."""
    host, port = nats_rig.url.split("//")[1].split(":")
    proxy = TcpProxy(host, int(port))
    await proxy.start()
    try:
        a, recorder = await nats_rig.make(
            backplane=f"nats://127.0.0.1:{proxy.port}", history_size=3
        )
        b, _ = await nats_rig.make(history_size=3)
        await a.follow(["c", "d"])
        first = [(await b.publish([draft(c)], None)).ids[0] for c in ("c", "d")]
        await recorder.wait_for(first)
        proxy.cut()
        assert isinstance(a, Health)
        await _until(lambda: not a.state().connected)
        meanwhile = [(await b.publish([draft(c)], None)).ids[0] for c in ["c"] * 6 + ["d"]]
        proxy.restore()
        await recorder.wait_for(meanwhile[3:])
        assert recorder.lost_channels == ["c"]
        assert recorder.ids() == first + meanwhile[3:]
    finally:
        await proxy.close()
