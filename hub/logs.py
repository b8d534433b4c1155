"""Logging: one line per thing that matters (start, stop, backplane lost/regained), text or JSON.

A log line is one line: every value a client chose (a grant's ``sub``, a header, a name) may hold
CR, LF or other control characters, and written raw they forge lines of their own. ``escape`` is
the one function that makes a value safe for a line, and both formatters apply it to the whole
message and to every ``extra=`` value, so a log call cannot forget it. Only a traceback keeps its
own line breaks (it is the hub's text, formatted apart from the message).
"""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any

import orjson

__all__ = ["escape", "redact_access_log", "setup"]

#: C0 and C1 controls, DEL, the Unicode line and paragraph separators, and lone surrogates (bytes
#: >= 0x80 that were not UTF-8: aiohttp decodes headers with surrogateescape).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match[0])
    if 0xDC80 <= code <= 0xDCFF:  # a byte surrogateescape kept: show the byte
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escape(value: str) -> str:
    """``value`` with every character that could break or forge a log line written as
    ``\\xNN`` / ``\\uNNNN``; printable text (any script) is left as it is."""
    return _UNSAFE.sub(_escaped, value)


def _clean(value: Any) -> Any:
    return escape(value) if isinstance(value, str) else value


class _TextFormatter(logging.Formatter):
    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape(record.message)
        return super().formatMessage(record)


# Attributes every LogRecord has; anything else was passed with extra= and goes into JSON lines.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": escape(record.getMessage()),
        }
        line |= {k: _clean(v) for k, v in record.__dict__.items() if k not in _STANDARD}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def setup(log_format: str, level: str, worker: int = 0) -> None:
    """``worker``: a worker's number (``workers``), carried by each of its lines: the workers
    write to their supervisor's stdout, one log stream for the whole hub."""
    handler = logging.StreamHandler(sys.stdout)
    if log_format == "json":
        handler.setFormatter(_JsonFormatter())
        if worker:
            handler.addFilter(_WorkerNumber(worker))
    else:
        tag = f"[worker {worker}]" if worker else ""
        handler.setFormatter(
            _TextFormatter(f"%(asctime)s %(levelname)s %(name)s{tag}: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").disabled = True  # one line per request is not wanted


class _WorkerNumber(logging.Filter):
    """Puts ``worker`` on every record (a JSON line's field)."""

    def __init__(self, worker: int) -> None:
        super().__init__()
        self._worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self._worker
        return True


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
