"""Logging: one line per thing that matters (start, stop, backplane lost/regained), text or JSON."""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any

import orjson

__all__ = ["redact_access_log", "setup"]

# Attributes every LogRecord has; anything else was passed with extra= and goes into JSON lines.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line |= {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def setup(log_format: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stdout)
    if log_format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").disabled = True  # one line per request is not wanted


#: A ticket in a query string: logged as ``ticket=***``.
_TICKET = re.compile(r"(?<=[?&]ticket=)[^&\s\"']*")


class _RedactTickets(logging.Filter):
    """Rewrites access-log records so a one-time ticket never reaches a log line.

    The hub runs with the access log off; this guards any runner that turns it on (aiohttp's
    test server, a deployment's own ``access_log``). Grants and tokens travel in headers and
    cookies, which the access log formats do not show unless configured to.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if "ticket=" in str(record.msg) or any("ticket=" in str(a) for a in record.args or ()):
            record.msg = _TICKET.sub("***", record.getMessage())
            record.args = None
        for name, value in list(record.__dict__.items()):
            if isinstance(value, str) and "ticket=" in value and name != "msg":
                setattr(record, name, _TICKET.sub("***", value))
        return True


_REDACT = _RedactTickets()


def redact_access_log() -> None:
    """Install the ticket filter on aiohttp's access logger (idempotent)."""
    access = logging.getLogger("aiohttp.access")
    if _REDACT not in access.filters:
        access.addFilter(_REDACT)
