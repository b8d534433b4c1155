"""What a newcomer tripped on (issue 20, section 3), each through the real interface.

The README's commands run as written; errors name the setting to change and never show a
Python repr; JSON answers end with a newline; a near-miss city name gets a suggestion.
"""

from __future__ import annotations

import asyncio
import io
import re
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.conftest import HubServer, MakeHub
from tests.support.processes import ROOT, HubProcess, clean_env, run_to_end

TOKEN = "newcomer-token-0123456789"


@pytest.fixture
async def process_hub() -> AsyncIterator[HubProcess]:
    """A real ``python -m hub serve``: its own HTTP layer (hub.protocol) answers parser errors."""
    process = await HubProcess.spawn(
        "--config", "/dev/null",
        env={"HUB_HOST": "127.0.0.1", "HUB_PORT": "0", "HUB_PUBLISH_TOKENS": TOKEN},
    )  # fmt: skip
    try:
        yield await process.started()
    finally:
        await process.stop()


# -- errors that name their setting ------------------------------------------------------------


@pytest.mark.any_backplane
async def test_a_body_over_max_body_bytes_names_max_event_bytes_too(hub: HubServer) -> None:
    body = orjson.dumps({"data": "x" * (2 * hub.config.max_body_bytes)})
    async with hub.session.post(
        f"{hub.url}/channels/big/events",
        data=io.BytesIO(body),
        headers={"Content-Type": "application/json"},
    ) as response:
        answer = await response.json()
        assert response.status == 413
        assert "max_body_bytes" in answer["error"] and "max_event_bytes" in answer["error"]


@pytest.mark.parametrize("count", [1000, 40000])
async def test_a_long_url_is_a_clean_json_error(process_hub: HubProcess, count: int) -> None:
    """1,000 channels: the line fits (the limit follows max_stream_channels), so the handler
    answers, naming max_stream_channels. Far longer: 414 naming the limit; never a repr."""
    query = "&".join(f"channel=c{index}" for index in range(count))
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{process_hub.url}/events?{query}") as response,
    ):
        body = await response.read()
    assert body.endswith(b"}\n")
    answer = orjson.loads(body)
    assert "bytearray" not in answer["error"] and "b'" not in answer["error"]
    assert "max_stream_channels" in answer["error"]
    assert response.status == (400 if count == 1000 else 414), answer


async def test_a_long_header_is_431(process_hub: HubProcess) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{process_hub.url}/healthz", headers={"X-Big": "y" * 20000}) as response,
    ):
        answer = await response.json()
        assert response.status == 431, answer
        assert "8190 bytes" in answer["error"] and "b'" not in answer["error"]


async def test_raw_high_bytes_in_the_url_are_a_json_400(process_hub: HubProcess) -> None:
    """The parser refuses them before any route; the hub's HTTP layer answers in JSON."""
    for target in (b"/channels/jobs/\xff/events", b"/events?channel=\xff\xfe"):
        reader, writer = await asyncio.open_connection("127.0.0.1", process_hub.port)
        writer.write(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        async with asyncio.timeout(10):
            answer = await reader.read()
        writer.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        assert re.match(rb"HTTP/1\.[01] 400 ", head), answer
        assert b"application/json" in head
        assert "error" in orjson.loads(body)


async def test_a_duplicate_key_in_the_config_file_is_named(tmp_path: Path) -> None:
    """Pasting the README's private-channel TOML into the shipped config.toml, which sets
    private_channels already: the error names the key and both lines."""
    page = ROOT / "docs" / "concepts" / "private-channels.md"
    snippet = page.read_text().partition("```toml\n")[2]
    snippet = snippet.partition("```")[0]
    assert "private_channels" in snippet
    config = tmp_path / "config.toml"
    shutil.copy(ROOT / "config.toml", config)
    shipped = config.read_text()
    config.write_text(shipped + "\n" + snippet)
    first = 1 + shipped.splitlines().index(
        next(line for line in shipped.splitlines() if line.startswith("private_channels"))
    )
    code, out, err = await run_to_end(
        sys.executable, "-m", "hub", "serve", "--config", str(config),
        env=clean_env(), cwd=tmp_path,
    )  # fmt: skip
    assert code == 2, (out, err)
    assert "key private_channels" in err and f"already set at line {first}" in err, err


# -- JSON ends with a newline ------------------------------------------------------------------


@pytest.mark.any_backplane
async def test_json_answers_end_with_a_newline(make_hub: MakeHub) -> None:
    hub = await make_hub(demo_jobs=True)
    for method, path, body in (
        ("GET", "/healthz", None),
        ("GET", "/channels", None),
        ("GET", "/openapi.json", None),
        ("GET", "/nowhere", None),
        ("POST", "/channels/a/events", {"data": 1}),
        ("POST", "/channels/a/events", {"nope": 1}),
        ("POST", "/demo/answers", None),
        ("POST", "/demo/jobs", None),
    ):
        async with hub.session.request(method, f"{hub.url}{path}", json=body) as response:
            raw = await response.read()
            assert response.content_type == "application/json", (path, raw)
            assert raw.endswith(b"\n") and not raw.endswith(b"\n\n"), (path, raw)


# -- clock cities ------------------------------------------------------------------------------


@pytest.mark.any_backplane
async def test_a_bare_city_is_taken_and_a_near_miss_is_suggested(hub: HubServer) -> None:
    stream = await hub.subscribe("/event-stream?city=Kolkata&sec=1")
    tick = await stream.next(timeout=5)
    assert orjson.loads(tick.data)["channel"] == "time/Asia/Kolkata/1"
    await stream.close()
    for city, suggestion in (("Asia/Calcuta", "Asia/Calcutta"), ("new yrok", "America/New_York")):
        async with hub.session.get(f"{hub.url}/event-stream", params={"city": city}) as response:
            answer = await response.json()
            assert response.status == 400
            assert f"did you mean {suggestion}" in answer["error"], answer
    async with hub.session.get(f"{hub.url}/channels/time/Asia/Calcuta/5/events") as response:
        answer = await response.json()
        assert response.status == 400 and "Asia/Calcutta" in answer["error"], answer
