"""ssehub: a Server-Sent Events broadcast hub (channels, clock channels, HTTP publish, resume).

Importing the package stays cheap (no aiohttp): ``python -m hub`` must install its signal
handlers before the heavy imports, and ``python -m hub publish`` needs none of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hub.app import create_app
    from hub.config import Config, ConfigError, load

__all__ = ["Config", "ConfigError", "create_app", "load"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from hub.app import create_app

        return create_app
    if name in ("Config", "ConfigError", "load"):
        from hub import config

        return getattr(config, name)
    raise AttributeError(f"module 'hub' has no attribute {name!r}")
