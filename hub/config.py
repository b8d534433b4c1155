"""Settings: built-in defaults < profile < config file (TOML) < ``HUB_*`` environment < flags.

Every setting has one entry in ``Config`` with its type and its check; the file, the environment
and the flags all go through the same checks, and an error names the key, the bad value and where
it came from, so a typo stops start-up instead of being silently ignored.

A profile (``profile``, set like any other key) is a set of defaults: ``"default"`` has no limit
per client, so a load test, an office behind one NAT or a backend publishing as fast as it can is
served; ``"public"`` turns on the limits per client address sized for the open internet
(``PROFILES``). A key set explicitly (file, environment or flag) wins over its profile, so one
limit can be loosened or tightened without giving up the rest.

This module is the loader (where a value comes from, and which source wins); the table of
settings is ``hub.config_fields`` and the value checks ``hub.config_checks`` and
``hub.config_access``. ``Config`` and the rest are re-exported here: the hub imports them from
``hub.config``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hub.backplane.registry import section_keys, sections_of
from hub.config_access import SECRET_KEYS, URL_KEYS, PublishToken, redact_url
from hub.config_checks import ClockSpec
from hub.config_fields import PROFILES, Config
from hub.config_toml import read_toml

__all__ = ["PROFILES", "ClockSpec", "Config", "ConfigError", "PublishToken", "load"]

#: Read when no --config is given and the working directory has one.
DEFAULT_CONFIG_FILE = "config.toml"
ENV_PREFIX = "HUB_"
#: The environment variable naming the config file (same as --config).
CONFIG_ENV = "HUB_CONFIG"


class ConfigError(Exception):
    """A setting is unknown or bad; the message names the key."""


def _check(key: str, value: Any, source: str, shown: str | None = None) -> Any:
    """``shown``: the value as the user wrote it (environment text), for the error message."""
    spec = Config.keys().get(key)
    if spec is None:
        raise ConfigError(f"{source}: unknown setting {key!r}")
    try:
        return spec.metadata["check"](value)
    except ValueError as error:
        if key in SECRET_KEYS:  # never echoed, not even in an error
            shown = "(hidden)"
        elif key in URL_KEYS and isinstance(value, str):  # its password never echoed
            shown = repr(redact_url(value))
        raise ConfigError(f"{source}: {key} = {shown or repr(value)}: {error}") from None


def _from_env_text(key: str, text: str) -> Any:
    """Turn an environment string into the type the setting's check expects."""
    default = Config.keys()[key].default
    if isinstance(default, bool):
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        return text
    if isinstance(default, int | float):
        try:
            number = float(text) if "." in text or "e" in text.lower() else int(text)
        except ValueError:
            return text
        return number
    if key == "clocks":
        return _clocks_from_env(text)
    if isinstance(default, tuple):
        return [part.strip() for part in text.split(",") if part.strip()]
    return text


#: How ``HUB_CLOCKS`` is written (the TOML form of ``clocks`` would be a list of tables).
CLOCKS_ENV_FORM = "timezone:seconds[,timezone:seconds...], e.g. Asia/Kolkata:5,Europe/London:1"


def _clocks_from_env(text: str) -> list[dict[str, Any]]:
    """``HUB_CLOCKS=Asia/Kolkata:5,Europe/London:1``; the zones and intervals are checked later."""
    clocks: list[dict[str, Any]] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        timezone, _, interval = item.rpartition(":")
        if not timezone or not interval.strip().isdigit():
            raise ConfigError(
                f"environment HUB_CLOCKS: {item!r} is not timezone:seconds; "
                f"expected {CLOCKS_ENV_FORM}"
            )
        clocks.append({"timezone": timezone.strip(), "interval": int(interval)})
    return clocks


def load(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the configuration; raises ``ConfigError`` naming the key on any bad setting."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    backends: dict[str, Any] = {}  # the backends' own keys, for their sections (registry)
    backend_keys = section_keys()

    def into(key: str) -> dict[str, Any]:
        return backends if key in backend_keys else values

    if path is None:
        path = env.get(CONFIG_ENV) or None
    if path is None and Path(DEFAULT_CONFIG_FILE).is_file():
        path = DEFAULT_CONFIG_FILE
    if path is not None:
        try:
            table = read_toml(path, hidden=SECRET_KEYS)
        except OSError as error:
            raise ConfigError(f"cannot read config file {str(path)!r}: {error.strerror}") from None
        except ValueError as error:  # the key, the line and what to do (hub.config_toml)
            raise ConfigError(f"config file {str(path)!r} is not valid TOML: {error}") from None
        for key, value in table.items():
            into(key)[key] = _check(key, value, f"config file {os.fspath(path)!r}")
    for name, text in env.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV:
            continue
        key = name[len(ENV_PREFIX) :].lower()
        if key not in Config.keys():  # noqa: SIM118 (a classmethod)
            raise ConfigError(f"environment: unknown setting {name}")
        into(key)[key] = _check(key, _from_env_text(key, text), f"environment {name}", repr(text))
    for key, value in (overrides or {}).items():
        if value is not None:
            into(key)[key] = _check(key, value, f"command line --{key.replace('_', '-')}")
    for key, value in PROFILES[values.get("profile", "default")].items():
        values.setdefault(key, value)  # the profile's defaults: an explicit setting wins
    config = Config(**values)
    config = dataclasses.replace(config, backplane_settings=sections_of(backends))
    if config.max_event_bytes > config.max_body_bytes:
        raise ConfigError(
            f"max_event_bytes = {config.max_event_bytes} is larger than max_body_bytes = "
            f"{config.max_body_bytes}: no event that size could be posted"
        )
    if config.webhook_url and not config.webhook_secret:
        raise ConfigError(
            "webhook_url is set but webhook_secret is not: set a secret of at least 16 bytes, "
            "the key of the webhooks' X-Ssehub-Signature"
        )
    return config
