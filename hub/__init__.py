"""ssehub: a Server-Sent Events broadcast hub (channels, clock channels, HTTP publish, resume)."""

from hub.app import create_app
from hub.config import Config, ConfigError, load

__all__ = ["Config", "ConfigError", "create_app", "load"]
__version__ = "0.1.0"
