"""The settings themselves: one frozen dataclass, ``Config``, with every key, its default and its
check, and the profiles (sets of defaults).

A table to read (what can be set, to what, checked how), apart from how a value gets there (the
loader and its precedence, ``hub.config``) and from how a value is checked
(``hub.config_checks``, ``hub.config_access``). Every module of the hub imports ``Config`` from
``hub.config``, which re-exports it; this module exists so that neither half grows past a page.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from hub.backplane.registry import check_url, section_keys, sections_of
from hub.backplane.settings import Section
from hub.config_access import (
    PublishToken,
    check_cookie_name,
    check_jwt_secret,
    check_patterns,
    check_pem_file,
    check_tokens,
    check_webhook_secret,
    check_webhook_url,
)
from hub.config_checks import (
    ClockSpec,
    choice,
    clocks,
    directory,
    flag,
    integer,
    networks,
    number,
    text,
    texts,
    workers,
)

__all__ = ["PROFILES", "Config", "LogFormat", "LogLevel", "Profile"]

S = TypeVar("S", bound=Section)

LogFormat = Literal["text", "json"]
Profile = Literal["default", "public"]
LogLevel = Literal["debug", "info", "warning", "error"]


def _setting(default: Any, check: Callable[[Any], Any]) -> Any:
    """A setting: its default, and its check in the metadata the loader reads."""
    return field(default=default, metadata={"check": check})


@dataclass(frozen=True, slots=True)
class Config:
    """Every setting, its default and its check; config.toml documents what each one does."""

    host: str = _setting("127.0.0.1", text)
    port: int = _setting(8080, integer(0, 65535))
    backlog: int = _setting(4096, integer(1))
    # processes serving the port (hub.supervisor); 1: one process, as ever. The shipped
    # config.toml says "auto" (every CPU), the code's default is one process.
    workers: int | str = _setting(1, workers)
    retry: int = _setting(3000, integer(0))
    heartbeat: float = _setting(15.0, number(0.1))
    history_size: int = _setting(1000, integer(0))
    history_ttl: float = _setting(3600.0, number(1))
    max_event_bytes: int = _setting(65536, integer(1))
    max_batch: int = _setting(1000, integer(1))
    max_body_bytes: int = _setting(1048576, integer(1024))
    max_pending_bytes: int = _setting(1048576, integer(1024))
    max_subscribers: int = _setting(15000, integer(1))
    max_channels: int = _setting(10000, integer(1))
    max_stream_channels: int = _setting(100, integer(1))
    publish_tokens: tuple[PublishToken, ...] = _setting((), check_tokens)
    private_channels: tuple[str, ...] = _setting((), check_patterns)
    subscribe_jwt_secret: str = _setting("", check_jwt_secret)
    subscribe_jwt_public_key: str = _setting("", check_pem_file)
    subscribe_cookie: str = _setting("ssehub_grant", check_cookie_name)
    # one-time tickets per publisher (hub.ticket_quota); 0 turns one off
    ticket_rate: float = _setting(200.0, number(0))
    ticket_burst: int = _setting(2000, integer(1))
    max_publisher_tickets: int = _setting(10000, integer(0))
    cors_origins: tuple[str, ...] = _setting(("*",), texts)
    publish_cors_origins: tuple[str, ...] = _setting((), texts)
    shutdown_timeout: float = _setting(5.0, number(0))
    clocks: tuple[ClockSpec, ...] = _setting((), clocks)
    clocks_on_demand: bool = _setting(True, flag)
    backplane: str = _setting("memory", check_url)
    # Each backend's own keys (``redis_prefix``, ``nats_stream``, ...): hub.backplane.registry
    backplane_settings: tuple[Section, ...] = field(default_factory=lambda: sections_of({}))
    web_root: str = _setting("", directory)
    demo_jobs: bool = _setting(False, flag)
    max_demo_jobs: int = _setting(10, integer(1))
    demo_job_seconds: float = _setting(8.0, number(0.1, 3600))
    log_format: str = _setting("text", choice(LogFormat))
    log_level: str = _setting("info", choice(LogLevel))
    # -- limits per client (hub.limits, hub.clients, hub.refusals); 0 turns one off. Off by
    # default: the "public" profile (PROFILES) turns them on.
    profile: str = _setting("default", choice(Profile))
    publish_rate: float = _setting(0.0, number(0))
    publish_burst: int = _setting(2000, integer(1))
    subscribe_rate: float = _setting(0.0, number(0))
    subscribe_burst: int = _setting(100, integer(1))
    max_client_streams: int = _setting(0, integer(0))
    max_client_channels: int = _setting(0, integer(0))
    trusted_proxies: tuple[str, ...] = _setting((), networks)
    max_history_bytes: int = _setting(134217728, integer(0))
    idle_timeout: float = _setting(30.0, number(0.1))
    body_timeout: float = _setting(30.0, number(0.1))
    tcp_user_timeout: float = _setting(0.0, number(0))
    # -- Durable Streams (hub.dialects.durable)
    durable_long_poll: float = _setting(30.0, number(0.1, 3600))
    durable_sse_close: float = _setting(60.0, number(0.1, 3600))
    # -- latest-wins channels (hub.conflation), presence channels (hub.presence), webhooks
    # (hub.webhooks): channel patterns as private_channels; "" turns webhooks off
    conflate: tuple[str, ...] = _setting((), check_patterns)
    presence: tuple[str, ...] = _setting((), check_patterns)
    webhook_url: str = _setting("", check_webhook_url)
    webhook_secret: str = _setting("", check_webhook_secret)
    webhook_grace: float = _setting(5.0, number(0, 3600))

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
