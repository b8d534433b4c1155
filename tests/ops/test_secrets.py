"""No secret setting is ever shown: not in a config error, not in a log line.

Publish tokens, ``subscribe_jwt_secret``, ``webhook_secret``, a password in the ``backplane`` or
``webhook_url`` URL (user info or ``?password=``) and a NATS credentials file's content: each
set wrong (in the config file, the environment, a flag) stops ``python -m hub serve`` with exit
code 2 and a message naming the key, never the value; each set right, the hub's whole output
never contains it. Real processes, as an operator runs them.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.support.hubs import Hubs, start_process
from tests.support.processes import clean_env, run_to_end

SECRET = "hunter2-SECRET-3f9a1c77e0b2d5c4a6"


# (config file text or None, environment, flags, text the error must contain)
ERRORS: tuple[tuple[str | None, dict[str, str], list[str], str], ...] = (
    (f'subscribe_jwt_secret = "{SECRET[:20]}"\n', {}, [],
     "subscribe_jwt_secret = (hidden): an HS256 secret must be at least 32 bytes"),
    (None, {"HUB_SUBSCRIBE_JWT_SECRET": SECRET[:20]}, [],
     "HUB_SUBSCRIBE_JWT_SECRET: subscribe_jwt_secret = (hidden): an HS256 secret"),
    (None, {"HUB_WEBHOOK_SECRET": SECRET[:10]}, [], "webhook_secret = (hidden)"),
    (f'publish_tokens = ["{SECRET}", "{SECRET[:9]}"]\n', {}, [],
     "publish_tokens = (hidden): each token must be at least 16"),
    (None, {"HUB_PUBLISH_TOKENS": f"{SECRET},{SECRET[:9]}"}, [], "publish_tokens = (hidden)"),
    (f'publish_tokens = [{{token = "{SECRET}", chanels = ["a"]}}]\n', {}, [],
     "publish_tokens = (hidden): entry 0: chanels: a token entry is a table"),
    ("publish_tokens = [1234567890123456789012]\n", {}, [],
     "entry 0: expected a string or a table, not int"),
    (f'backplane = "postgres://app:{SECRET}@db:5432/x"\n', {}, [],
     "backplane = 'postgres://***@db:5432/x'"),
    (None, {}, ["--backplane", f"pg://db/0?password={SECRET}"],
     "backplane = 'pg://db/0?password=***'"),
    (None, {"HUB_WEBHOOK_URL": f"ftp://me:{SECRET}@example.com/x", "HUB_WEBHOOK_SECRET": SECRET},
     [], "webhook_url = 'ftp://***@example.com/x': expected an http:// or https:// URL"),
    (f'subscribe_jwt_secret = "{SECRET}\n', {}, [],
     "line 1, key subscribe_jwt_secret: Illegal character '\\n' ((hidden))"),
    (f'retry = 5\npublish_tokens = [\n  "{SECRET}",\n  "{SECRET}\n]\n', {}, [],
     "line 4: Illegal character '\\n': (hidden)"),
)  # fmt: skip


@pytest.mark.parametrize(
    ("text", "env", "flags", "message"),
    ERRORS,
    ids=(
        "file-jwt-secret", "env-jwt-secret", "env-webhook-secret", "file-short-token",
        "env-short-token", "file-token-table", "file-unquoted-token", "file-backplane-userinfo",
        "flag-backplane-query", "env-webhook-url-userinfo", "toml-secret-line",
        "toml-token-line",
    ),
)  # fmt: skip
async def test_a_bad_secret_setting_is_named_never_shown(
    tmp_path: Path, text: str | None, env: dict[str, str], flags: list[str], message: str
) -> None:
    """Exit code 2, the key named, the value (or any part of it) nowhere in the output."""
    args = ["-m", "hub", "serve", "--port", "0", *flags]
    if text is not None:
        (tmp_path / "bad.toml").write_text(text)
        args += ["--config", str(tmp_path / "bad.toml")]
    code, out, err = await run_to_end(
        sys.executable, *args, env=clean_env(HUB_HOST="127.0.0.1", **env), cwd=tmp_path
    )
    assert code == 2, (out, err)
    assert message in err, err
    for part in (SECRET, SECRET[:9], "1234567890123456789012"):
        assert part not in out + err


async def test_a_credentials_file_is_never_read_into_an_error(tmp_path: Path) -> None:
    """``nats_creds``: without the ``nkeys`` package the file cannot be used: a config error at
    start (not a traceback at connect), naming the key and not the file's content."""
    if importlib.util.find_spec("nkeys") is not None:
        pytest.skip("nkeys is installed: the file is usable")
    creds = tmp_path / "user.creds"
    creds.write_text(f"-----BEGIN NATS USER JWT-----\n{SECRET}\n------END NATS USER JWT------\n")
    code, out, err = await run_to_end(
        sys.executable, "-m", "hub", "serve", "--port", "0",
        env=clean_env(HUB_HOST="127.0.0.1", HUB_NATS_CREDS=str(creds)), cwd=tmp_path,
    )  # fmt: skip
    assert code == 2, (out, err)
    assert "nats_creds" in err and "needs the nkeys package" in err, err
    assert SECRET not in out + err and "Traceback" not in err


@pytest.mark.slow
async def test_a_password_in_the_backplane_url_is_never_logged(
    backplane: str, backplane_url: str
) -> None:
    """Redis and NATS reached through a URL with a user and password (the test servers take
    any): the hub serves, its start line shows ``***`` for them, and no line of its output,
    at debug level, shows the password, nor the tokens and grant secret it holds."""
    if backplane == "memory":
        pytest.skip("no URL")
    hubs = Hubs(backplane_url)
    settings = hubs.settings({})  # this test's prefix or stream, cleaned up after
    scheme, _, rest = backplane_url.partition("://")
    url = f"{scheme}://default:{SECRET}@{rest}"
    if backplane == "nats":  # a list of servers, each with its credentials
        url = f"{url},{scheme}://default:{SECRET}@{rest}"
    else:
        url = f"{url}?password={SECRET}"
    hub = await start_process(
        hubs,
        **(settings | {"backplane": url}),
        log_level="debug",
        publish_tokens=f"{SECRET}-token",
        subscribe_jwt_secret=SECRET,
        private_channels="secret/*",
    )
    try:
        async with aiohttp.ClientSession() as session:
            headers = {"Authorization": f"Bearer {SECRET}-token"}
            posted = await session.post(
                f"{hub.url}/channels/c/events", json={"data": 1}, headers=headers
            )
            assert posted.status == 202, await posted.text()
            refused = await session.post(f"{hub.url}/channels/c/events", json={"data": 1})
            assert refused.status == 401
        assert f"{scheme}://***@" in hub.lines[-1], hub.lines[-1]
    finally:
        await hub.stop()
        await hubs.clean()
    assert SECRET not in hub.output, hub.output
