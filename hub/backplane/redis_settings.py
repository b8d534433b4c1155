"""The Redis backplane's settings (``redis_*``), owned here rather than by ``hub.config``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from hub.backplane.settings import setting, text

__all__ = ["RedisSettings"]


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """``redis_prefix``: every key the hub writes starts with it (several hubs, or several
    clusters, share one Redis under different prefixes)."""

    SECTION: ClassVar[str] = "redis"

    prefix: str = setting("ssehub:", text)
