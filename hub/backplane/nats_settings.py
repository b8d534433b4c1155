"""The NATS backplane's settings (``nats_*``), owned here rather than by ``hub.config``."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, ClassVar

from hub.backplane.settings import existing_file, setting, text

__all__ = ["NatsSettings"]


def stream_name(value: Any) -> str:
    name = text(value)
    if not name or any(c in name for c in " .*>/\\\t") or not name.isprintable():
        raise ValueError("expected a JetStream stream name: no spaces, '.', '*', '>', '/' or '\\'")
    return name


def subject_prefix(value: Any) -> str:
    prefix = text(value)
    tokens = prefix.split(".")
    if not all(tokens) or any(c in prefix for c in " *>\t") or not prefix.isprintable():
        raise ValueError("expected NATS subject tokens separated by '.', without '*' or '>'")
    return prefix


def creds_file(value: Any) -> str:
    """A credentials file, read by nats-py only at connect, through the ``nkeys`` package: its
    absence would be a traceback then, so it is a config error now (naming no file content)."""
    path = existing_file(value)
    if path and importlib.util.find_spec("nkeys") is None:
        raise ValueError("a credentials file needs the nkeys package: pip install nkeys")
    return path


@dataclass(frozen=True, slots=True)
class NatsSettings:
    """``nats_stream``: the JetStream stream holding every channel; ``nats_subject_prefix``: its
    subjects' prefix (``hub.backplane.nats_link``); ``nats_creds``: a credentials file, or ""."""

    SECTION: ClassVar[str] = "nats"

    stream: str = setting("ssehub", stream_name)
    subject_prefix: str = setting("ssehub.ch", subject_prefix)
    creds: str = setting("", creds_file)
