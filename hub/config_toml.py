"""Reading the config file: TOML, with errors that say which key and what to do.

``tomllib`` says ``Cannot overwrite a value (at line 158, column 43)``: right, but it names no
key, and the usual cause (pasting a documented snippet into the shipped file, which already sets
the same key) is not obvious from it. ``read_toml`` adds the line's key, the line itself, and,
for a key set twice, the line that set it first.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

__all__ = ["explain", "read_toml"]

_WHERE = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_KEY = re.compile(r"\s*([A-Za-z0-9_.\"'-]+)\s*=")
_TABLE = re.compile(r"\s*\[")
_TWICE = ("overwrite", "twice", "redefine")


def read_toml(path: str | os.PathLike[str], hidden: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The file's table. Raises ``OSError``, or ``ValueError`` with the explained problem; the
    line of a key in ``hidden`` (a secret) is never shown."""
    text = Path(path).read_bytes().decode("utf-8", errors="replace")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(explain(text, str(error), hidden)) from None


def explain(text: str, message: str, hidden: frozenset[str] = frozenset()) -> str:
    """``message`` (tomllib's) with the key and line it is about, and what to do. A line that
    sets a key in ``hidden``, or continues one (a token on a line of its own in a list), is
    shown as ``(hidden)``."""
    where = _WHERE.search(message)
    if where is None:
        return message
    what = message[: where.start()].strip()
    number = int(where[1])
    lines = text.splitlines()
    line = lines[number - 1] if 0 < number <= len(lines) else ""
    key_match = _KEY.match(line)
    shown = repr(line.strip() if len(line.strip()) <= 80 else line.strip()[:77] + "...")
    if _key_of(lines, number - 1) in hidden:
        shown = "(hidden)"
    if key_match is None:
        return f"line {number}: {what}: {shown}"
    key = key_match[1]
    told = f"line {number}, key {key}: {what} ({shown})"
    if any(word in what.lower() for word in _TWICE):
        first = _set_before(lines, number - 1, key)
        if first is not None:
            return (
                f"{told}: {key} is already set at line {first}; keep one of the two "
                "(edit that line rather than adding another)"
            )
        return f"{told}: {key} is set twice; keep one"
    return told


def _set_before(lines: list[str], end: int, key: str) -> int | None:
    """The line number (1-based) where ``key`` was set earlier in the same table, if any."""
    for index in range(end - 1, -1, -1):
        if _TABLE.match(lines[index]):
            return None
        found = _KEY.match(lines[index])
        if found is not None and found[1] == key:
            return index + 1
    return None


def _key_of(lines: list[str], index: int) -> str | None:
    """The key line ``index`` sets or continues (the nearest key at or above it in its table),
    or None."""
    for above in range(index, -1, -1):
        if above < len(lines) and (found := _KEY.match(lines[above])) is not None:
            return found[1].strip("\"'")
        if above < len(lines) and _TABLE.match(lines[above]):
            return None
    return None
