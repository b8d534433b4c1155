"""The profile: a set of defaults, chosen like any setting (file < HUB_PROFILE < --profile), and
below every setting given explicitly, wherever that was given.

Through the real loader (files on disk, environments as mappings, flags as overrides), and once
through HTTP: the profile's limit refuses, an explicit setting loosens it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from hub.config import PROFILES, ConfigError, load
from tests.conftest import MakeHub
from tests.support.helpers import metrics
from tests.support.processes import ROOT
from tests.support.sse_client import open_stream

PUBLIC = PROFILES["public"]


def _file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "hub.toml"
    path.write_text(text)
    return str(path)


def test_no_config_and_the_shipped_config_have_no_limit_per_client() -> None:
    for path in (os.devnull, str(ROOT / "config.toml")):
        config = load(path=path, env={})
        assert config.profile == "default"
        assert config.subscribe_rate == 0 and config.publish_rate == 0
        assert config.max_client_streams == 0 and config.max_client_channels == 0
        assert not config.limits_per_address


@pytest.mark.parametrize("where", ["file", "env", "flag"])
def test_the_public_profile_from_each_source(tmp_path: Path, where: str) -> None:
    """Set in the file, HUB_PROFILE or --profile, the profile sets its limits, also on top of
    the shipped config.toml (which sets none of them explicitly)."""
    path = _file(tmp_path, 'profile = "public"\n') if where == "file" else str(ROOT / "config.toml")
    env = {"HUB_PROFILE": "public"} if where == "env" else {}
    overrides = {"profile": "public"} if where == "flag" else {}
    config = load(path=path, env=env, overrides=overrides)
    assert config.profile == "public"
    for key, value in PUBLIC.items():
        assert getattr(config, key) == value, key
    assert config.limits_per_address


def test_the_profile_itself_follows_file_env_flag(tmp_path: Path) -> None:
    path = _file(tmp_path, 'profile = "public"\n')
    assert load(path=path, env={"HUB_PROFILE": "default"}).profile == "default"
    assert (
        load(path=path, env={"HUB_PROFILE": "default"}, overrides={"profile": "public"}).profile
        == "public"
    )


@pytest.mark.parametrize("where", ["file", "env", "flag"])
def test_an_explicit_setting_beats_the_profile_from_any_source(tmp_path: Path, where: str) -> None:
    """subscribe_rate = 0 given anywhere wins over the public profile given anywhere else; the
    profile's other limits stay on."""
    path = _file(tmp_path, "subscribe_rate = 0\n" if where == "file" else "")
    env = {"HUB_PROFILE": "public"} | ({"HUB_SUBSCRIBE_RATE": "0"} if where == "env" else {})
    overrides = {"subscribe_rate": 0} if where == "flag" else {}
    config = load(path=path, env=env, overrides=overrides)
    assert config.subscribe_rate == 0
    assert config.max_client_streams == PUBLIC["max_client_streams"]
    # and an explicit value below the profile's applies in the default profile too
    assert load(path=path, env={"HUB_MAX_CLIENT_STREAMS": "7"}).max_client_streams == 7


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            {"env": {"HUB_PROFILE": "Public"}},
            r"environment HUB_PROFILE: profile = 'Public': expected one of default, public",
        ),
        (
            {"overrides": {"profile": "open"}},
            r"command line --profile: profile = 'open': expected one of",
        ),
        ({"text": "profile = 1\n"}, r"profile = 1: expected one of default, public"),
    ],
    ids=("env", "flag", "file"),
)
def test_a_bad_profile_names_the_key_and_the_value(
    tmp_path: Path, source: dict[str, object], message: str
) -> None:
    path = _file(tmp_path, str(source.get("text", "")))
    with pytest.raises(ConfigError, match=message):
        load(path=path, env=source.get("env", {}), overrides=source.get("overrides"))  # type: ignore[arg-type]


def test_a_token_entry_rate_is_checked(tmp_path: Path) -> None:
    good = 'publish_tokens = [{ token = "token-0123456789abcdef", rate = 50, burst = 10 }]\n'
    (token,) = load(path=_file(tmp_path, good), env={}).publish_tokens
    assert (token.rate, token.burst, token.channels) == (50.0, 10, None)
    for bad, says in (
        ("rate = -1", "entry 0: rate = -1: expected events a second"),
        ('rate = "fast"', "entry 0: rate = 'fast'"),
        ("burst = 0", "entry 0: burst = 0: expected a whole number"),
        ("speed = 3", "entry 0: speed: a token entry is a table"),
    ):
        text = f'publish_tokens = [{{ token = "token-0123456789abcdef", {bad} }}]\n'
        with pytest.raises(ConfigError, match=rf"publish_tokens = .*{says}"):
            load(path=_file(tmp_path, text), env={})


@pytest.mark.any_backplane
async def test_through_http_the_profile_refuses_and_an_explicit_setting_loosens(
    make_hub: MakeHub,
) -> None:
    """Public profile with subscribe_burst = 2 explicit: streams opened one after another are
    turned away past the burst and the profile's subscribe_rate (it is on); with
    subscribe_rate = 0 explicit, none is.

    Not "the third is refused": at 20 a second a token comes back every 50 ms, which three
    opens on a busy machine can take. So 30 are opened and the accepted ones are bounded by
    what the bucket can have given in the time they took."""
    strict = await make_hub(profile="public", subscribe_burst=2)
    start = time.monotonic()
    for _ in range(30):
        strict.streams.append(await open_stream(strict.session, f"{strict.url}/channels/a/events"))
    elapsed = time.monotonic() - start
    # a refusal is a whole answer (Content-Length); a live stream is chunked and stays open
    turned_away = [s for s in strict.streams if "Content-Length" in s.response.headers]
    assert turned_away, f"30 streams in {elapsed:.2f}s and none refused"
    accepted = 30 - len(turned_away)
    assert accepted <= 2 + PUBLIC["subscribe_rate"] * elapsed + 1, (accepted, elapsed)
    assert (await metrics(strict))["hub_subscribers_refused_total"] == len(turned_away)
    one = turned_away[0]
    assert one.response.status == 200 and await one.until_end() == []
    assert any("subscribe_rate" in c for c in one.parser.comments)
    loose = await make_hub(profile="public", subscribe_burst=2, subscribe_rate=0)
    # a refused stream gets its retry hint too, so each is proved live by an event reaching it
    streams = [await loose.subscribe("/channels/a/events") for _ in range(3)]
    assert (await loose.publish("a", "to all"))["subscribers"] == 3
    for live in streams:
        assert (await live.next()).data == "to all"
