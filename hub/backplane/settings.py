"""A backend's own settings: its config keys, their defaults and checks, beside its code.

A backend that needs settings declares one section: a frozen dataclass with a ``SECTION`` name,
whose fields are ``setting(default, check)``. The key a user writes (in the config file, as
``HUB_<KEY>``, as a flag) is ``<SECTION>_<field>``: the Redis section ``redis`` with its field
``prefix`` is the ``redis_prefix`` setting. ``hub.config`` learns the sections from
``hub.backplane.registry`` and checks their keys exactly as its own (a check raises
``ValueError`` with what was expected; the message names the key and where it came from), so a
new backend adds keys without touching ``hub.config``. The backend reads its section with
``config.section(TheSettings)``.

This module imports nothing of the hub, so ``hub.config`` can load it without an import circle.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Protocol

__all__ = ["Section", "existing_file", "keys_of", "setting", "text"]


class Section(Protocol):
    """A backend's settings: a frozen dataclass of ``setting`` fields with a ``SECTION`` name."""

    SECTION: ClassVar[str]
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]


def setting(default: Any, check: Callable[[Any], Any]) -> Any:
    """A field of a section: its default and its check (the metadata ``hub.config`` reads)."""
    return dataclasses.field(default=default, metadata={"check": check})


def keys_of(section: type[Section]) -> dict[str, str]:
    """The user-visible keys of a section, each mapped to its field's name."""
    return {f"{section.SECTION}_{f.name}": f.name for f in dataclasses.fields(section)}


def text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


def existing_file(value: Any) -> str:
    """A path to a file that exists, or "" (none)."""
    path = text(value)
    if path and not Path(path).is_file():
        raise ValueError("no such file")
    return path
