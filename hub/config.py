"""Settings: built-in defaults < profile < config file (TOML) < ``HUB_*`` environment < flags.

Every setting has one entry in ``Config`` with its type and its check; the file, the environment
and the flags all go through the same checks, and an error names the key, the bad value and where
it came from, so a typo stops start-up instead of being silently ignored.

A profile (``profile``, set like any other key) is a set of defaults: ``"default"`` has no limit
per client, so a load test, an office behind one NAT or a backend publishing as fast as it can is
served; ``"public"`` turns on the limits per client address sized for the open internet
(``PROFILES``). A key set explicitly (file, environment or flag) wins over its profile, so one
limit can be loosened or tightened without giving up the rest.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

from hub.backplane.registry import check_url, section_keys, sections_of
from hub.backplane.settings import Section
from hub.config_access import (
    PublishToken,
    check_cookie_name,
    check_jwt_secret,
    check_patterns,
    check_pem_file,
    check_tokens,
)
from hub.config_toml import read_toml
from hub.events import InvalidInput
from hub.ticker import check_interval, check_timezone

__all__ = ["PROFILES", "ClockSpec", "Config", "ConfigError", "PublishToken", "load"]

S = TypeVar("S", bound=Section)

LogFormat = Literal["text", "json"]
Profile = Literal["default", "public"]
LogLevel = Literal["debug", "info", "warning", "error"]

#: Read when no --config is given and the working directory has one.
DEFAULT_CONFIG_FILE = "config.toml"
ENV_PREFIX = "HUB_"
#: The environment variable naming the config file (same as --config).
CONFIG_ENV = "HUB_CONFIG"


class ConfigError(Exception):
    """A setting is unknown or bad; the message names the key."""


@dataclass(frozen=True, slots=True)
class ClockSpec:
    timezone: str
    interval: int


def _int(low: int, high: int | None = None) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("expected a whole number")
        if value < low or (high is not None and value > high):
            raise ValueError(f"expected {low} to {high}" if high else f"expected at least {low}")
        return value

    return check


def _number(low: float, high: float | None = None) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("expected a number")
        if value < low or (high is not None and value > high):
            bounds = f"{low:g} to {high:g}" if high else f"at least {low:g}"
            raise ValueError(f"expected {bounds}")
        return float(value)

    return check


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


def _texts(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError("expected a list of strings")
    return tuple(value)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def _choice(kind: Any) -> Callable[[Any], str]:
    options = get_args(kind)

    def check(value: Any) -> str:
        if value not in options:
            raise ValueError("expected one of " + ", ".join(options))
        return str(value)

    return check


def _networks(value: Any) -> tuple[str, ...]:
    """Addresses or CIDRs (``10.0.0.0/8``, ``::1``); kept as text, parsed by hub.clients."""
    import ipaddress

    items = _texts(value)
    for item in items:
        try:
            ipaddress.ip_network(item.strip(), strict=False)
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or CIDR network") from None
    return tuple(item.strip() for item in items)


def _directory(value: Any) -> str:
    text = _text(value)
    if text and not Path(text).is_dir():
        raise ValueError("no such directory")
    return text


def _clocks(value: Any) -> tuple[ClockSpec, ...]:
    if not isinstance(value, list | tuple):
        raise ValueError('expected a list of {timezone = "...", interval = seconds} tables')
    specs = []
    for item in value:
        if isinstance(item, ClockSpec):
            item = {"timezone": item.timezone, "interval": item.interval}
        if not isinstance(item, dict) or set(item) != {"timezone", "interval"}:
            raise ValueError(f'expected {{timezone = "...", interval = seconds}}, got {item!r}')
        try:
            specs.append(
                ClockSpec(check_timezone(item["timezone"]), check_interval(item["interval"]))
            )
        except InvalidInput as error:
            raise ValueError(str(error)) from None
    return tuple(specs)


def _setting(default: Any, check: Callable[[Any], Any]) -> Any:
    return field(default=default, metadata={"check": check})


@dataclass(frozen=True, slots=True)
class Config:
    """Every setting, its default and its check; config.toml documents what each one does."""

    host: str = _setting("127.0.0.1", _text)
    port: int = _setting(8080, _int(0, 65535))
    backlog: int = _setting(4096, _int(1))
    retry: int = _setting(3000, _int(0))
    heartbeat: float = _setting(15.0, _number(0.1))
    history_size: int = _setting(1000, _int(0))
    history_ttl: float = _setting(3600.0, _number(1))
    max_event_bytes: int = _setting(65536, _int(1))
    max_batch: int = _setting(1000, _int(1))
    max_body_bytes: int = _setting(1048576, _int(1024))
    max_pending_bytes: int = _setting(1048576, _int(1024))
    max_subscribers: int = _setting(15000, _int(1))
    max_channels: int = _setting(10000, _int(1))
    max_stream_channels: int = _setting(100, _int(1))
    publish_tokens: tuple[PublishToken, ...] = _setting((), check_tokens)
    private_channels: tuple[str, ...] = _setting((), check_patterns)
    subscribe_jwt_secret: str = _setting("", check_jwt_secret)
    subscribe_jwt_public_key: str = _setting("", check_pem_file)
    subscribe_cookie: str = _setting("ssehub_grant", check_cookie_name)
    # one-time tickets per publisher (hub.ticket_quota); 0 turns one off
    ticket_rate: float = _setting(200.0, _number(0))
    ticket_burst: int = _setting(2000, _int(1))
    max_publisher_tickets: int = _setting(10000, _int(0))
    cors_origins: tuple[str, ...] = _setting(("*",), _texts)
    publish_cors_origins: tuple[str, ...] = _setting((), _texts)
    shutdown_timeout: float = _setting(5.0, _number(0))
    clocks: tuple[ClockSpec, ...] = _setting((), _clocks)
    clocks_on_demand: bool = _setting(True, _flag)
    backplane: str = _setting("memory", check_url)
    # Each backend's own keys (``redis_prefix``, ``nats_stream``, ...): hub.backplane.registry
    backplane_settings: tuple[Section, ...] = field(default_factory=lambda: sections_of({}))
    web_root: str = _setting("", _directory)
    demo_jobs: bool = _setting(False, _flag)
    max_demo_jobs: int = _setting(10, _int(1))
    demo_job_seconds: float = _setting(8.0, _number(0.1, 3600))
    log_format: str = _setting("text", _choice(LogFormat))
    log_level: str = _setting("info", _choice(LogLevel))
    # -- limits per client (hub.limits, hub.clients, hub.refusals); 0 turns one off. Off by
    # default: the "public" profile (PROFILES) turns them on.
    profile: str = _setting("default", _choice(Profile))
    publish_rate: float = _setting(0.0, _number(0))
    publish_burst: int = _setting(2000, _int(1))
    subscribe_rate: float = _setting(0.0, _number(0))
    subscribe_burst: int = _setting(100, _int(1))
    max_client_streams: int = _setting(0, _int(0))
    max_client_channels: int = _setting(0, _int(0))
    trusted_proxies: tuple[str, ...] = _setting((), _networks)
    max_history_bytes: int = _setting(134217728, _int(0))
    idle_timeout: float = _setting(30.0, _number(0.1))
    body_timeout: float = _setting(30.0, _number(0.1))
    tcp_user_timeout: float = _setting(0.0, _number(0))

    @classmethod
    def keys(cls) -> dict[str, dataclasses.Field[Any]]:
        """Every setting a user can write, the backends' keys too, with its default and check."""
        own = {f.name: f for f in dataclasses.fields(cls) if "check" in f.metadata}
        return own | section_keys()

    def section(self, kind: type[S]) -> S:
        """A backend's settings (``config.section(RedisSettings).prefix``)."""
        for found in self.backplane_settings:
            if isinstance(found, kind):
                return found
        raise LookupError(f"{kind.__name__} is not a section of hub.backplane.registry")

    @property
    def limits_per_address(self) -> bool:
        """Whether a subscribe limit keys on the client address (so who that is matters;
        publishing without a token is for loopback clients only)."""
        return bool(self.subscribe_rate or self.max_client_streams or self.max_client_channels)


#: The defaults each profile sets (below any explicit setting). "public": one address opens 100
#: streams at once then 20 a second, holds 1,000 streams and brings 1,000 channels into being
#: (a fifteenth and a tenth of the hub's max_subscribers and max_channels, so one address cannot
#: fill it); one publisher (token, or address without tokens) sends 1,000 events a second in
#: bursts of 2,000, a fifth of one hub process's single publishes on 2 cores.
PROFILES: dict[str, dict[str, Any]] = {
    "default": {},
    "public": {
        "subscribe_rate": 20.0,
        "subscribe_burst": 100,
        "max_client_streams": 1000,
        "max_client_channels": 1000,
        "publish_rate": 1000.0,
        "publish_burst": 2000,
    },
}


def _check(key: str, value: Any, source: str, shown: str | None = None) -> Any:
    """``shown``: the value as the user wrote it (environment text), for the error message."""
    spec = Config.keys().get(key)
    if spec is None:
        raise ConfigError(f"{source}: unknown setting {key!r}")
    try:
        return spec.metadata["check"](value)
    except ValueError as error:
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
            table = read_toml(path)
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
    return config
