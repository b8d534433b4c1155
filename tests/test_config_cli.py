"""The command line and configuration, through real ``python -m hub`` processes.

Servers listen on 127.0.0.1 with port 0 (the port is read from the start log line); every process
started here is ended by its pid at teardown if it is still running.
"""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import sys
import time
import tomllib
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from hub.config import Config
from tests.conftest import REDIS_URL
from tests.helpers import RawSocket
from tests.processes import ROOT, HubProcess, clean_env, run_to_end
from tests.sse_client import Stream, open_stream

TOKEN = "cli-token-0123456789abcdef"


@pytest.fixture
async def spawn(tmp_path: Path) -> AsyncIterator[Any]:
    """Start ``python -m hub serve ...`` in an empty directory; all are ended at teardown."""
    started: list[HubProcess] = []

    async def go(*args: str, env: dict[str, str] | None = None, cwd: Path = tmp_path) -> HubProcess:
        hub = await HubProcess.spawn(*args, env={"HUB_HOST": "127.0.0.1", **(env or {})}, cwd=cwd)
        started.append(hub)
        return hub

    yield go
    for hub in started:
        await hub.end()


async def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    program: Sequence[str] = (),
) -> tuple[int, str, str]:
    """Run the CLI to completion; returns (exit code, stdout, stderr)."""
    command = list(program) or [sys.executable, "-m", "hub"]
    return await run_to_end(*command, *args, env=clean_env(**(env or {})), cwd=cwd)


async def subscribe(session: aiohttp.ClientSession, url: str, **headers: str) -> Stream:
    stream = await open_stream(session, url, headers)
    async with asyncio.timeout(5):
        while stream.parser.retry is None:
            chunk = await stream.response.content.readany()
            assert chunk
            stream.parser.feed(chunk)
    return stream


# -- configuration -----------------------------------------------------------------------------


async def test_precedence_file_env_flags(spawn: Any, tmp_path: Path) -> None:
    """Built-in defaults < config file < HUB_* environment < command-line flags."""
    with socket.socket() as busy:  # the file names a port in use: the flag must win
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        busy_port = busy.getsockname()[1]
        config = tmp_path / "hub.toml"
        config.write_text(
            f'port = {busy_port}\nretry = 1111\nmax_event_bytes = 100\nlog_format = "json"\n'
        )
        hub = await spawn(
            "--config",
            str(config),
            "--port",
            "0",
            "--log-format",
            "text",
            env={"HUB_RETRY": "2222", "HUB_LOG_FORMAT": "json"},
        )
        await hub.started()
    assert hub.port != busy_port  # flag beats file
    assert not hub.lines[-1].lstrip().startswith("{")  # flag (text) beats env and file (json)
    async with aiohttp.ClientSession() as session:
        stream = await subscribe(session, f"{hub.url}/channels/c/events")
        assert stream.parser.retry == 2222  # env beats file
        await stream.close()
        async with session.post(
            f"{hub.url}/channels/c/events", json={"data": "x" * 101}
        ) as response:  # the file's setting beats the default (65536)
            assert response.status == 413
            assert "max_event_bytes" in (await response.json())["error"]


async def test_config_toml_in_working_directory(spawn: Any, tmp_path: Path) -> None:
    """Without --config the hub reads ./config.toml; HUB_CONFIG names another file."""
    (tmp_path / "config.toml").write_text("retry = 4321\n")
    other = tmp_path / "other.toml"
    other.write_text("retry = 5432\n")
    default = await spawn("--port", "0")
    named = await spawn("--port", "0", env={"HUB_CONFIG": str(other)})
    await default.started()
    await named.started()
    async with aiohttp.ClientSession() as session:
        for hub, retry in ((default, 4321), (named, 5432)):
            stream = await subscribe(session, f"{hub.url}/channels/c/events")
            assert stream.parser.retry == retry
            await stream.close()


def test_shipped_config_documents_every_key() -> None:
    """config.toml at the repository root sets every setting, each under a comment."""
    text = (ROOT / "config.toml").read_text()
    table = tomllib.loads(text)
    assert set(table) == set(Config.keys())
    lines = text.splitlines()
    for key in table:
        (index,) = [i for i, line in enumerate(lines) if re.match(rf"{key}\s*=", line)]
        above = index - 1  # walk up over the other keys of the same commented group
        while above >= 0 and lines[above].strip() and not lines[above].startswith("#"):
            above -= 1
        assert above >= 0 and lines[above].startswith("#"), f"{key} has no comment"


async def test_shipped_config_starts(spawn: Any) -> None:
    """The documented default config is valid: the hub starts with it and serves."""
    hub = await spawn("--config", str(ROOT / "config.toml"), "--port", "0")
    await hub.started()
    async with aiohttp.ClientSession() as session:
        stream = await subscribe(session, f"{hub.url}/channels/c/events")
        assert stream.parser.retry == 3000
        await stream.close()


# (config file text or None, environment, flags, text the error must contain)
CONFIG_ERRORS: tuple[tuple[str | None, dict[str, str], list[str], str], ...] = (
    ("colour = 1\n", {}, [], "unknown setting 'colour'"),
    ('port = "eighty"\n', {}, [], "port"),
    ("retry = -5\n", {}, [], "retry"),
    ("heartbeat = true\n", {}, [], "heartbeat"),
    ('publish_tokens = "one-token-that-is-long"\n', {}, [], "publish_tokens"),
    ('publish_tokens = ["short"]\n', {}, [], "publish_tokens"),
    ('clocks = [{timezone = "Mars/Base", interval = 5}]\n', {}, [], "clocks"),
    ('clocks = [{timezone = "UTC", interval = 0}]\n', {}, [], "clocks"),
    ('log_level = "loud"\n', {}, [], "log_level"),
    ('backplane = "postgres://x"\n', {}, [], "backplane"),
    ("max_event_bytes = 4096\nmax_body_bytes = 2048\n", {}, [], "max_event_bytes"),
    ("retry = \n", {}, [], "not valid TOML"),
    (None, {"HUB_COLOUR": "1"}, [], "HUB_COLOUR"),
    (None, {"HUB_HEARTBEAT": "fast"}, [], "heartbeat"),
    (None, {"HUB_MAX_BATCH": "0"}, [], "max_batch"),
    (None, {"HUB_CLOCKS_ON_DEMAND": "maybe"}, [], "clocks_on_demand"),
    (None, {"HUB_CONFIG": "/nonexistent/hub.toml"}, [], "cannot read config file"),
    (None, {}, ["--port", "70000"], "port"),
    (None, {}, ["--config", "/nonexistent/hub.toml"], "cannot read config file"),
)


@pytest.mark.parametrize(
    ("text", "env", "flags", "message"),
    CONFIG_ERRORS,
    ids=(
        "file-unknown-key",
        "file-wrong-type",
        "file-bad-value",
        "file-bool-for-number",
        "file-string-for-list",
        "file-short-token",
        "file-bad-clock-zone",
        "file-bad-clock-interval",
        "file-bad-choice",
        "file-bad-backplane",
        "file-inconsistent",
        "file-not-toml",
        "env-unknown-key",
        "env-wrong-type",
        "env-bad-value",
        "env-bad-flag",
        "env-missing-file",
        "flag-bad-port",
        "flag-missing-file",
    ),
)
async def test_config_error_exits_2(
    tmp_path: Path, text: str | None, env: dict[str, str], flags: list[str], message: str
) -> None:
    """A bad setting stops start-up with exit code 2 and one message naming the key."""
    args = ["serve", "--port", "0", *flags]
    if text is not None:
        (tmp_path / "bad.toml").write_text(text)
        args += ["--config", str(tmp_path / "bad.toml")]
    code, out, err = await run_cli(*args, env=env, cwd=tmp_path)
    assert code == 2, (out, err)
    assert message in err, err
    assert "Traceback" not in err
    assert "listening" not in out


async def test_console_script(tmp_path: Path) -> None:
    """The ``ssehub`` console script is the same CLI."""
    script = Path(sys.executable).with_name("ssehub")
    code, _, err = await run_cli("serve", "--port", "70000", program=[str(script)], cwd=tmp_path)
    assert code == 2
    assert "port" in err


# -- serving -----------------------------------------------------------------------------------


async def test_cli_serves_and_publishes(spawn: Any, tmp_path: Path, backplane: str) -> None:
    """``python -m hub serve --port 0`` serves streams; ``python -m hub publish`` posts to it."""
    env = {"HUB_REDIS_PREFIX": f"ssehub-test:{uuid.uuid4().hex[:12]}:"}
    hub = await spawn(
        "--port", "0", "--backplane", REDIS_URL if backplane == "redis" else "memory", env=env
    )
    await hub.started()
    start_line = hub.lines[-1]
    assert "loopback clients only" in start_line  # no tokens: the hub says who may publish
    async with aiohttp.ClientSession() as session:
        stream = await subscribe(session, f"{hub.url}/events?channel=jobs/1&channel=other")
        async with session.post(f"{hub.url}/channels/other/events", json={"data": "http"}) as r:
            assert r.status == 202
            http_id = (await r.json())["id"]
        message = await stream.next()
        assert (message.data, message.id) == ("http", http_id)

        code, out, err = await run_cli("publish", "jobs/1", "hello\nworld", "--url", hub.url)
        assert code == 0, err
        receipt = orjson.loads(out)
        assert receipt["channel"] == "jobs/1" and receipt["subscribers"] == 1
        message = await stream.next()
        assert (message.event, message.data, message.id) == (
            "message",
            "hello\nworld",
            receipt["id"],
        )

        code, out, err = await run_cli(
            "publish", "jobs/1", '{"pct": 40}', "--json", "--event", "progress",
            env={"SSEHUB_URL": hub.url},
        )  # fmt: skip
        assert code == 0, err
        message = await stream.next()
        assert (message.event, message.data) == ("progress", '{"pct":40}')

        code, _, err = await run_cli("publish", "bad channel", "x", "--url", hub.url)
        assert code == 1
        assert "400" in err and "invalid channel name" in err
        await stream.close()
    assert len(hub.lines) == 1, "one log line at start, none per request or event"


async def test_timezones_from_the_tzdata_package(spawn: Any) -> None:
    """Clocks work without a system timezone database (a slim container): tzdata is enough."""
    hub = await spawn("--port", "0", env={"PYTHONTZPATH": ""})
    await hub.started()
    async with aiohttp.ClientSession() as session:
        stream = await subscribe(session, f"{hub.url}/event-stream?city=Asia/Calcutta&sec=1")
        message = await stream.next(timeout=3)
        await stream.close()
    assert message.event == "UPDATE"
    assert orjson.loads(message.data)["iso"].endswith("+05:30")


async def test_cli_publish_cannot_reach(tmp_path: Path) -> None:
    """``publish`` to a hub that is not there fails with exit code 1 and says so."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    code, _, err = await run_cli("publish", "c", "x", "--url", f"http://127.0.0.1:{port}")
    assert code == 1
    assert "cannot reach" in err


async def test_tokens_from_environment(spawn: Any) -> None:
    """HUB_PUBLISH_TOKENS is comma-separated; the CLI sends --token or $SSEHUB_TOKEN."""
    other = "second-token-abcdefghijkl"
    hub = await spawn("--port", "0", env={"HUB_PUBLISH_TOKENS": f"{TOKEN}, {other}"})
    await hub.started()
    assert "2 token(s)" in hub.lines[-1]
    code, _, err = await run_cli("publish", "c", "x", "--url", hub.url)
    assert code == 1 and "401" in err
    code, _, err = await run_cli("publish", "c", "x", "--url", hub.url, "--token", "nope" * 5)
    assert code == 1 and "403" in err
    code, out, err = await run_cli("publish", "c", "x", "--url", hub.url, "--token", TOKEN)
    assert code == 0, err
    code, out, err = await run_cli(
        "publish", "c", "x", "--url", hub.url, env={"SSEHUB_TOKEN": other}
    )
    assert code == 0, err
    assert orjson.loads(out)["channel"] == "c"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=("SIGTERM", "SIGINT"))
async def test_signal_ends_streams_and_exits(
    spawn: Any, tmp_path: Path, signum: signal.Signals
) -> None:
    """On SIGTERM/SIGINT every stream ends cleanly and the process exits 0 within the timeout.

    One subscriber reads, one is a raw socket that never reads (parked, no traffic): neither may
    hold the shutdown up.
    """
    config = tmp_path / "hub.toml"
    config.write_text("shutdown_timeout = 3\n")
    hub = await spawn("--config", str(config), "--port", "0")
    await hub.started()
    async with aiohttp.ClientSession() as session:
        stream = await subscribe(session, f"{hub.url}/events?channel=a&channel=time/UTC/60")
        idle = await RawSocket.connect(hub.port, "/channels/idle/events")
        try:
            await idle.read_until(b"retry:")
            sent = time.monotonic()
            hub.process.send_signal(signum)
            rest = await stream.until_end(timeout=3)  # the stream ends (EOF), not times out
            assert stream.ended
            assert all(m.event == "UPDATE" for m in rest), rest  # at most clock frames
            code = await hub.wait(timeout=3)
            took = time.monotonic() - sent
            await idle.drain_to_end(timeout=3)
        finally:
            idle.close()
    assert code == 0
    assert took < 3, f"took {took:.2f} s, more than shutdown_timeout"
    assert any("stopped" in line for line in hub.lines), hub.lines
    assert len(hub.lines) == 2, hub.lines  # one line at start, one at stop
