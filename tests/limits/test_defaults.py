"""The shipped defaults serve every legitimate load (issue 20, part 1); the public profile hardens.

Each test starts ``python -m hub serve`` as a user does: with the repository's ``config.toml``
as shipped, or with no config at all (``--config /dev/null``), or with ``--profile public``. All
their clients come from one address (127.0.0.1), as a load test from one machine, an office behind
one NAT or a mobile carrier's shared address do.
"""

from __future__ import annotations

import asyncio
import re
import resource
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.processes import ROOT, HubProcess
from tests.support.sse_client import Stream, open_stream

SHIPPED = str(ROOT / "config.toml")
CONFIGS = {"shipped": ("--config", SHIPPED), "none": ("--config", "/dev/null")}
TOKEN = "defaults-token-0123456789"

Spawn = Callable[..., Awaitable[HubProcess]]


@pytest.fixture
async def spawn() -> AsyncIterator[Spawn]:
    """``await spawn(*args, env=...)``: a started hub on 127.0.0.1, any free port; ended after."""
    started: list[HubProcess] = []

    async def go(*args: str, env: dict[str, str] | None = None) -> HubProcess:
        hub = await HubProcess.spawn(
            *args,
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            # one process: these tests are about one process's limits; a hub of several counts
            # them in its supervisor, tests/workers/test_hubwide_limits.py
            env={"HUB_DEMO_JOBS": "false", "HUB_WORKERS": "1", **(env or {})},
        )
        started.append(hub)
        return await hub.started()

    yield go
    for hub in started:
        await hub.stop()


class RawStream:
    """One subscriber on a raw socket: cheap enough to have thousands in the test process."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.head = b""

    @classmethod
    async def open(cls, port: int, path: str) -> RawStream:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: hub\r\nAccept: text/event-stream\r\n\r\n".encode()
        )
        stream = cls(reader, writer)
        # everything up to the retry hint: the status line, the headers, "retry: ..."
        stream.head = await reader.readuntil(b"retry: ")
        stream.head += await reader.readuntil(b"\n")
        return stream

    @property
    def status(self) -> int:
        return int(self.head.split(b" ", 2)[1])

    @property
    def retry(self) -> int:
        return int(re.findall(rb"retry: (\d+)", self.head)[-1])

    async def refused(self) -> bool:
        """Whether the hub ended it right after the hint (read until the end, or the data)."""
        rest = await self.reader.read(4096)
        while rest and b"data:" not in rest and not rest.endswith(b"0\r\n\r\n"):
            more = await self.reader.read(4096)
            if not more:
                break
            rest += more
        return b"data:" not in rest

    def close(self) -> None:
        self.writer.close()


async def open_many(port: int, path: str, count: int) -> list[RawStream]:
    """``count`` streams opened at once (all connects and requests in flight together)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 500:
        if hard != resource.RLIM_INFINITY and hard < count + 500:
            pytest.skip(f"{count} streams need {count + 500} open files; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (count + 500, hard))
    return list(await asyncio.gather(*(RawStream.open(port, path) for _ in range(count))))


async def health(hub: HubProcess) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(f"{hub.url}/healthz") as answer:
        return dict(await answer.json())


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("config", CONFIGS)
async def test_5000_streams_from_one_address_are_all_live(spawn: Spawn, config: str) -> None:
    """The issue's load test: 5,000 subscribers from one address at once. Each gets its stream,
    and one event published afterwards reaches every one of them."""
    hub = await spawn(*CONFIGS[config])
    streams = await open_many(hub.port, "/channels/load/events", 5000)
    try:
        assert {s.status for s in streams} == {200}
        assert {s.retry for s in streams} == {3000}, "some were told to come back later"
        assert (await health(hub))["subscribers"] == 5000
        async with aiohttp.ClientSession() as session:
            url = f"{hub.url}/channels/load/events"
            async with session.post(url, json={"data": "to all"}) as answer:
                assert answer.status == 202
                assert (await answer.json())["subscribers"] == 5000
        got = await asyncio.gather(*(s.reader.readuntil(b"data: to all\n") for s in streams))
        assert len(got) == 5000
    finally:
        for stream in streams:
            stream.close()
    assert "turned away" not in hub.output


@pytest.mark.parametrize("config", CONFIGS)
async def test_one_address_brings_2000_channels_into_being(spawn: Spawn, config: str) -> None:
    """20 streams x 100 new channels from one address: all live, 2,000 channels exist, and an
    event on the last channel of each stream arrives."""
    hub = await spawn(*CONFIGS[config])
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        streams: list[Stream] = []
        for s in range(20):
            names = "&".join(f"channel=s{s}-c{c}" for c in range(100))
            stream = await open_stream(session, f"{hub.url}/events?{names}")
            streams.append(stream)
            while stream.parser.retry is None:
                stream.parser.feed(await stream.response.content.readany())
            assert stream.parser.retry == 3000, stream.parser.comments
        assert (await health(hub))["channels"] >= 2000
        for s, stream in enumerate(streams):
            url = f"{hub.url}/channels/s{s}-c99/events"
            async with session.post(url, json={"data": s}) as answer:
                assert answer.status == 202
            assert (await stream.next()).data == str(s)
        for stream in streams:
            await stream.close()


async def _publish_fast(
    url: str, token: str, batches: int = 200, singles: int = 3000
) -> tuple[dict[int, int], dict[int, int]]:
    """``batches`` batches of 100 and ``singles`` single publishes, 8 at a time, as fast as they
    go; returns the count of each status for batches and for singles."""
    headers = {"Authorization": f"Bearer {token}"}
    statuses: tuple[dict[int, int], dict[int, int]] = ({}, {})
    batch = [{"channel": f"fast-{n % 10}", "data": n} for n in range(100)]
    connector = aiohttp.TCPConnector(limit=8)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def post(path: str, body: Any, into: dict[int, int]) -> None:
            async with session.post(f"{url}{path}", json=body) as answer:
                into[answer.status] = into.get(answer.status, 0) + 1
                await answer.read()

        await asyncio.gather(*(post("/publish", batch, statuses[0]) for _ in range(batches)))
        single = {"data": "one"}
        await asyncio.gather(
            *(post("/channels/fast/events", single, statuses[1]) for _ in range(singles))
        )
    return statuses


@pytest.mark.parametrize("config", CONFIGS)
async def test_a_token_is_never_throttled_by_default(spawn: Spawn, config: str) -> None:
    """A backend with a valid token: 200 batches of 100 as fast as it can, then 3,000 single
    publishes on 8 connections (the issue's ``wrk -c8``): every one is 202."""
    hub = await spawn(*CONFIGS[config], env={"HUB_PUBLISH_TOKENS": TOKEN})
    batches, singles = await _publish_fast(hub.url, TOKEN)
    assert batches == {202: 200}
    assert singles == {202: 3000}
    assert "turned away" not in hub.output


async def test_public_profile_rates_a_token_unless_its_entry_says(
    spawn: Spawn, tmp_path: Path
) -> None:
    """Under the public profile publish_rate holds a token back (429 and a log line naming it,
    not the token); a token whose entry sets ``rate = 0`` is never held back."""
    throttled, free = TOKEN, "defaults-token-free-0123456789"
    config = tmp_path / "hub.toml"
    config.write_text(f'publish_tokens = ["{throttled}", {{ token = "{free}", rate = 0 }}]\n')
    hub = await spawn("--config", str(config), "--profile", "public")
    batches, _ = await _publish_fast(hub.url, free, singles=0)
    assert batches == {202: 200}
    batches, _ = await _publish_fast(hub.url, throttled, singles=0)
    assert batches.get(202, 0) < 200 and set(batches) == {202, 429}, batches
    await hub_logged(hub, "by publish_rate")
    assert throttled not in hub.output and free not in hub.output


async def hub_logged(hub: HubProcess, text: str) -> str:
    """The first line of the hub's log that contains ``text`` (waiting for it a little)."""
    for _ in range(100):
        for line in hub.lines:
            if text in line:
                return line
        await asyncio.sleep(0.05)
    raise AssertionError(f"the hub never logged {text!r}:\n{hub.output}")


@pytest.mark.timeout(120)
async def test_public_profile_turns_a_flood_away_politely_and_says_so(spawn: Spawn) -> None:
    """400 streams at once from one address under the public profile (with the shipped config):
    some are served, the rest get 200 + a later retry: + end (never a 4xx/5xx an EventSource
    gives up on), and the log says who and by which setting, in one line, not four hundred."""
    hub = await spawn("--config", SHIPPED, "--profile", "public")
    streams = await open_many(hub.port, "/channels/flood/events", 400)
    try:
        assert {s.status for s in streams} == {200}
        refused = [s for s in streams if s.retry != 3000]
        assert 0 < len(refused) <= 300, "the burst of 100 should be served, the flood not"
        assert all(s.retry >= 3000 for s in refused)
        assert all(b"text/event-stream" in s.head for s in refused)
        for stream in refused[:20]:
            assert await stream.refused()
    finally:
        for stream in streams:
            stream.close()
    line = await hub_logged(hub, "turned away a stream from 127.0.0.1 by subscribe_rate")
    assert "20 new streams a second per address, 100 at once" in line
    assert sum("turned away" in line for line in hub.lines) == 1, hub.output


async def test_proxy_headers_from_an_untrusted_peer_warn_once(spawn: Spawn) -> None:
    """With the per-address limits on, X-Forwarded-For from a peer that is not in
    trusted_proxies gets one warning naming trusted_proxies, however many requests carry it.
    With the limits off (the default) or the peer trusted, nothing is said."""
    public = await spawn("--config", "/dev/null", "--profile", "public")
    default = await spawn("--config", "/dev/null")
    trusted = await spawn(
        "--config", "/dev/null", "--profile", "public", env={"HUB_TRUSTED_PROXIES": "127.0.0.1"}
    )
    async with aiohttp.ClientSession() as session:
        for hub in (public, default, trusted):
            for n in range(3):
                headers = {"X-Forwarded-For": f"198.51.100.{n}"}
                stream = await open_stream(session, f"{hub.url}/channels/p/events", headers)
                stream.parser.feed(await stream.response.content.readany())
                assert stream.parser.retry == 3000
                await stream.close()
    line = await hub_logged(public, "trusted_proxies")
    assert "127.0.0.1" in line and "X-Forwarded-For" in line
    assert sum("trusted_proxies" in line for line in public.lines) == 1
    await asyncio.sleep(0.2)  # the others had the same time to say something
    assert "trusted_proxies" not in default.output + trusted.output
