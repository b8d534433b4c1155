"""Which backplanes exist: their URL schemes and their settings sections.

``hub.config`` reads this (to check the ``backplane`` setting and each backend's keys) and
``hub.backplane.open_backplane`` builds from it; the backends' own modules are imported only
when chosen (``SCHEMES`` names them as text), and their settings modules import nothing of the
hub, so neither ``hub.config`` nor this module is part of an import circle. A new backplane is
its module, a line in ``SCHEMES`` and, if it has settings, a section in ``SECTIONS``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from hub.backplane.nats_settings import NatsSettings
from hub.backplane.redis_settings import RedisSettings
from hub.backplane.settings import Section, keys_of

__all__ = ["SCHEMES", "SECTIONS", "check_url", "scheme_of", "section_keys", "sections_of"]

#: URL scheme (or the bare word "memory") -> "module:class". The class is built with the Config.
SCHEMES: dict[str, str] = {
    "memory": "hub.backplane.memory:MemoryBackplane",
    "redis": "hub.backplane.redis:RedisBackplane",
    "rediss": "hub.backplane.redis:RedisBackplane",
    "unix": "hub.backplane.redis:RedisBackplane",
    "nats": "hub.backplane.nats:NatsBackplane",
    "tls": "hub.backplane.nats:NatsBackplane",
    # a worker's link to its supervisor's engine (workers > 1 on the memory backplane)
    "engine+unix": "hub.backplane.engine_client:EngineBackplane",
}

#: Every backend's settings section (their keys are checked whichever backplane is chosen, so a
#: typo in a key of another backend still stops start-up).
SECTIONS: tuple[type[Section], ...] = (RedisSettings, NatsSettings)


def scheme_of(url: str) -> str | None:
    """The registered scheme of a ``backplane`` setting, or None."""
    scheme = url if url == "memory" else url.partition("://")[0] if "://" in url else ""
    return scheme if scheme in SCHEMES else None


def check_url(value: Any) -> str:
    """The check of the ``backplane`` setting."""
    if not isinstance(value, str):
        raise ValueError("expected a string")
    if scheme_of(value) is None:
        shown = (scheme for scheme in SCHEMES if scheme not in ("memory", "engine+unix"))
        urls = ", ".join(f"{scheme}://" for scheme in shown)  # the engine's is the workers' own
        raise ValueError(f'expected "memory" or a URL of a backplane ({urls})')
    return value


def section_keys() -> dict[str, dataclasses.Field[Any]]:
    """Every backend key (``redis_prefix``, ...) -> its field (default and check)."""
    found: dict[str, dataclasses.Field[Any]] = {}
    for section in SECTIONS:
        fields = {f.name: f for f in dataclasses.fields(section)}
        found |= {key: fields[name] for key, name in keys_of(section).items()}
    return found


def sections_of(values: Mapping[str, Any]) -> tuple[Section, ...]:
    """Every section, built from the checked backend keys among ``values`` (defaults for the
    rest)."""
    built = []
    for section in SECTIONS:
        mine = {name: values[key] for key, name in keys_of(section).items() if key in values}
        built.append(section(**mine))
    return tuple(built)
