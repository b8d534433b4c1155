"""Each backend owns its settings (hub.backplane.settings): its keys read and fail as any other.

The keys, their ``HUB_*`` variables and their error messages are the ones users had when
hub.config owned them; a running hub refuses a bad one with exit code 2 and one line naming
it, and ``Config.section`` gives each backend its own.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from hub.backplane.nats_settings import NatsSettings
from hub.backplane.redis_settings import RedisSettings
from hub.config import Config, load
from tests.support.processes import clean_env, run_to_end


def test_backend_keys_take_file_then_environment_then_flags(tmp_path: Path) -> None:
    """Precedence as for every key: the file < HUB_* < overrides (the command line)."""
    path = tmp_path / "hub.toml"
    path.write_text('redis_prefix = "file:"\nnats_stream = "FromFile"\nnats_subject_prefix = "f"\n')
    env = {"HUB_NATS_STREAM": "FromEnv", "HUB_REDIS_PREFIX": "env:"}
    config = load(path=path, env=env, overrides={"redis_prefix": "flag:"})
    assert config.section(RedisSettings).prefix == "flag:"
    assert config.section(NatsSettings) == NatsSettings("FromEnv", "f", "")
    assert Config().section(RedisSettings) == RedisSettings("ssehub:")


def test_every_backend_key_is_a_setting() -> None:
    """The sections' keys are listed with the others (config.toml documents each: see
    tests/ops/test_config_cli), and the field that holds the sections is no setting of its own."""
    keys = Config.keys()
    assert {"redis_prefix", "nats_stream", "nats_subject_prefix", "nats_creds"} <= set(keys)
    assert "backplane_settings" not in keys


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("redis_prefix = 5\n", {}, "redis_prefix = 5: expected a string"),
        (
            None,
            {"HUB_NATS_STREAM": "a.b"},
            "environment HUB_NATS_STREAM: nats_stream = 'a.b': expected a JetStream stream name",
        ),
        (None, {"HUB_NATS_CREDS": "/no/such/file"}, "nats_creds = '/no/such/file': no such file"),
        ("backplane_settings = []\n", {}, "unknown setting 'backplane_settings'"),
        (None, {"HUB_BACKPLANE_SETTINGS": "x"}, "unknown setting HUB_BACKPLANE_SETTINGS"),
        (
            None,
            {"HUB_BACKPLANE": "http://x"},
            "backplane = 'http://x': expected \"memory\" or a URL of a backplane (redis://, "
            "rediss://, unix://, nats://, tls://)",
        ),
    ],
    ids=["file-type", "env-stream", "env-creds", "file-sections", "env-sections", "env-url"],
)
async def test_a_bad_backend_key_stops_the_hub_naming_it(
    tmp_path: Path, text: str | None, env: dict[str, str], message: str
) -> None:
    """``ssehub serve`` exits 2 with one line naming the key, its value and what was expected."""
    args = [sys.executable, "-m", "hub", "serve", "--port", "0"]
    if text is not None:
        (tmp_path / "bad.toml").write_text(text)
        args += ["--config", os.fspath(tmp_path / "bad.toml")]
    code, out, err = await run_to_end(*args, env=clean_env(**env), cwd=tmp_path)
    assert code == 2, (out, err)
    assert err.startswith("ssehub: config error: ") and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
