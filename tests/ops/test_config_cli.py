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
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from hub.config import PROFILES, Config
from tests.support.helpers import RawSocket
from tests.support.hubs import Hubs, hub_env
from tests.support.processes import ROOT, HubProcess, clean_env, dies_with_us, run_to_end
from tests.support.sse_client import Stream, open_stream

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
    """config.toml at the repository root sets every setting, each under a comment; those a
    profile sets are shown commented out with the public profile's value (set there, they
    would win over any profile)."""
    text = (ROOT / "config.toml").read_text()
    table = tomllib.loads(text)
    public = PROFILES["public"]
    assert set(table) == set(Config.keys()) - set(public)
    for key, value in public.items():
        assert re.search(rf"^# {key} = {value:g}$", text, re.MULTILINE), key
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
    (
        None,
        {"HUB_CLOCKS": "Asia/Kolkata"},
        [],
        "HUB_CLOCKS: 'Asia/Kolkata' is not timezone:seconds",
    ),
    (None, {"HUB_CLOCKS": "UTC:1,Asia/Kolkata:five"}, [], "e.g. Asia/Kolkata:5,Europe/London:1"),
    (None, {"HUB_CLOCKS": "Mars/Base:5"}, [], "HUB_CLOCKS: clocks = 'Mars/Base:5': unknown"),
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
        "env-clock-without-seconds",
        "env-clock-bad-seconds",
        "env-clock-bad-zone",
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


async def test_env_clocks_error_is_not_about_toml(tmp_path: Path) -> None:
    """A malformed HUB_CLOCKS is explained in its own form, not in the config file's TOML form."""
    code, _, err = await run_cli("serve", "--port", "0", env={"HUB_CLOCKS": "Europe/London"})
    assert code == 2
    assert "timezone:seconds" in err
    assert "{" not in err and "interval =" not in err, err


async def test_port_in_use_suggests_another(spawn: Any, tmp_path: Path) -> None:
    """A second hub on a port a first hub holds exits 1 and says how to pick another port."""
    first = await spawn("--port", "0")
    await first.started()
    code, out, err = await run_cli(
        "serve", "--port", str(first.port), env={"HUB_HOST": "127.0.0.1"}, cwd=tmp_path
    )
    assert code == 1, (out, err)
    assert f"cannot listen on 127.0.0.1:{first.port}: Address already in use" in err, err
    assert "--port or HUB_PORT" in err
    assert "Traceback" not in err


async def test_ipv6_host_logged_in_brackets(tmp_path: Path) -> None:
    """HUB_HOST=::1 logs a URL one can paste: http://[::1]:PORT, and the hub answers there."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no ::1 on this machine")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub", "serve", "--port", "0",
        cwd=tmp_path, env=clean_env(HUB_HOST="::1"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, preexec_fn=dies_with_us,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        async with asyncio.timeout(15):
            line = (await process.stdout.readline()).decode()
        match = re.search(r"listening on (http://\[::1\]:[0-9]+) ", line)
        assert match, line
        async with aiohttp.ClientSession() as session, session.get(f"{match[1]}/healthz") as r:
            assert r.status == 200
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            await process.communicate()


async def test_console_script(tmp_path: Path) -> None:
    """The ``ssehub`` console script is the same CLI."""
    script = Path(sys.executable).with_name("ssehub")
    code, _, err = await run_cli("serve", "--port", "70000", program=[str(script)], cwd=tmp_path)
    assert code == 2
    assert "port" in err


# -- serving -----------------------------------------------------------------------------------


async def test_cli_serves_and_publishes(
    spawn: Any, tmp_path: Path, backplane: str, backplane_url: str
) -> None:
    """``python -m hub serve --port 0`` serves streams; ``python -m hub publish`` posts to it."""
    hubs = Hubs(backplane_url)
    settings = hubs.settings({})  # this test's prefix / stream; the backplane goes by flag
    env = hub_env({k: v for k, v in settings.items() if k != "backplane"})
    hub = await spawn("--port", "0", "--backplane", settings["backplane"], env=env)
    try:
        await _serves_and_publishes(hub)
    finally:
        await hub.stop()
        await hubs.clean()


async def _serves_and_publishes(hub: HubProcess) -> None:
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


async def test_cli_publish_data_from_stdin_and_file(spawn: Any, tmp_path: Path) -> None:
    """DATA ``-`` is read from stdin and ``@FILE`` from a file, as with curl; one final newline
    is dropped; ``--raw`` sends ``-`` or ``@...`` as they are; an unreadable file exits 2."""
    hub = await spawn("--port", "0")
    await hub.started()
    (tmp_path / "progress.json").write_text('{"pct": 40, "stage": "resize"}\n')
    (tmp_path / "poem.txt").write_text("two\nlines\n")
    async with aiohttp.ClientSession() as session:
        stream = await subscribe(session, f"{hub.url}/channels/in/events")

        async def publish(*args: str, stdin: bytes = b"") -> str:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "hub", "publish", "in", *args, "--url", hub.url,
                cwd=tmp_path, env=clean_env(),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, preexec_fn=dies_with_us,
            )  # fmt: skip
            async with asyncio.timeout(20):
                out, err = await process.communicate(stdin)
            assert process.returncode == 0, err.decode()
            receipt_id = orjson.loads(out)["id"]
            message = await stream.next()
            assert message.id == receipt_id
            return message.data

        assert await publish("-", stdin=b"from stdin\n") == "from stdin"
        assert await publish("-", "--json", stdin=b'{"n": [1, 2]}') == '{"n":[1,2]}'
        assert await publish("@progress.json", "--json") == '{"pct":40,"stage":"resize"}'
        assert await publish(f"@{tmp_path / 'poem.txt'}") == "two\nlines"
        assert await publish("@-", stdin="ünïcode\r\n".encode()) == "ünïcode"
        assert await publish("-", "--raw") == "-"
        assert await publish("@home", "--raw") == "@home"
        await stream.close()

    code, _, err = await run_cli("publish", "in", "@missing.json", "--url", hub.url, cwd=tmp_path)
    assert code == 2
    assert "cannot read DATA from 'missing.json': No such file or directory" in err
    (tmp_path / "bad.json").write_text("{nope")
    code, _, err = await run_cli(
        "publish", "in", "@bad.json", "--json", "--url", hub.url, cwd=tmp_path
    )
    assert code == 2 and "DATA is not valid JSON" in err


@pytest.mark.parametrize("program", ["ssehub", "python -m hub"])
async def test_help_names_the_program(tmp_path: Path, program: str) -> None:
    """``ssehub --help`` says ``usage: ssehub``, ``python -m hub --help`` says so; no RST."""
    command = (
        [str(Path(sys.executable).with_name("ssehub"))]
        if program == "ssehub"
        else [sys.executable, "-m", "hub"]
    )
    for args in (["--help"], ["serve", "--help"], ["publish", "--help"]):
        code, out, err = await run_cli(*args, program=command, cwd=tmp_path)
        assert code == 0, err
        assert out.startswith(f"usage: {program} "), out
        assert "`" not in out, out


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


async def test_sigterm_ends_a_publish_stream_with_a_line_naming_where_to_go_on(
    spawn: Any,
) -> None:
    """A streaming publish whose body never ends must not hold a shutdown up for
    shutdown_timeout: the lines read are answered, then one 503 line names the first line not
    read, the response ends, and the process exits 0. The events answered were delivered."""
    hub = await spawn("--port", "0", env={"HUB_SHUTDOWN_TIMEOUT": "30"})
    await hub.started()
    async with aiohttp.ClientSession() as session:
        watcher = await subscribe(session, f"{hub.url}/channels/ps/events")
        reader, writer = await asyncio.open_connection("127.0.0.1", hub.port)
        try:
            writer.write(
                b"POST /publish/stream HTTP/1.1\r\nHost: hub\r\n"
                b"Content-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            body = b"".join(orjson.dumps({"channel": "ps", "data": i}) + b"\n" for i in range(3))
            body += b'{"channel": "ps", "da'  # a line cut short: not answered, not published
            writer.write(b"%x\r\n%b\r\n" % (len(body), body))
            await writer.drain()
            received = b""
            async with asyncio.timeout(5):
                while received.count(b'"id"') < 3:
                    received += await reader.read(65536)
            sent = time.monotonic()
            hub.process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(5):
                while not received.endswith(b"0\r\n\r\n"):
                    more = await reader.read(65536)
                    assert more, f"closed before the chunked end: {received!r}"
                    received += more
            code = await hub.wait(timeout=5)
            took = time.monotonic() - sent
            got = await watcher.until_end(timeout=3)
        finally:
            writer.close()
    head, _, chunked = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    lines = [orjson.loads(line) for line in _unchunk(chunked).splitlines()]
    assert [line.get("channel") for line in lines[:3]] == ["ps"] * 3
    assert lines[3] == {
        "line": 4,
        "error": "the hub is shutting down: this line and the ones after it were not read; "
        "send them again, to another hub",
        "status": 503,
    }
    assert len(lines) == 4
    assert [m.id for m in got if m.event != "UPDATE"] == [line["id"] for line in lines[:3]]
    assert code == 0
    assert took < 10, f"took {took:.2f} s: the stream held the shutdown up"


def _unchunk(data: bytes) -> bytes:
    """The body of a chunked HTTP/1.1 response, up to its last (0) chunk."""
    out = b""
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return out
        out, data = out + data[:size], data[size + 2 :]


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
