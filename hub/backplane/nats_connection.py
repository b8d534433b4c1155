"""NATS backplane: the connection and the stream, which every part of the backplane shares.

The parts (``nats_publish``, ``nats_history``, ``nats_reader``, ``nats_presence``,
``nats_private``) each take this ``Connection`` and what else they need, never the backplane
itself: the connection (``require``), the stream's name, subjects and ``base``, its state, and
the link's health. It connects with a bound first try (and keeps trying in the background),
refuses a nats-server too old for the guarantees, and creates the stream or brings its limits
to this hub's configuration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client

from hub.backplane import compat_nats
from hub.backplane.nats_link import MIN_VERSION, UNAVAILABLE, ApiError, Subjects, api, new_link
from hub.backplane.nats_settings import NatsSettings
from hub.config import ConfigError

__all__ = ["Connection"]

log = logging.getLogger("hub.backplane")

CONNECT_TIMEOUT = 3.0
STREAM_NOT_FOUND = 10059


class Connection:
    """``urls``: the ``backplane`` setting (comma-separated servers); ``reconnected``: called
    after the client reconnected (the reader then reads again through a new consumer)."""

    def __init__(
        self,
        urls: str,
        settings: NatsSettings,
        history_size: int,
        history_ttl: float,
        reconnected: Callable[[], None],
    ) -> None:
        self.stream = settings.stream
        self.subjects = Subjects(settings.subject_prefix)
        self.ttl = history_ttl
        self.link = new_link()
        self.nc: Client | None = None
        #: Added to a stream sequence to make a position (``hub.backplane.nats``).
        self.base = 0
        self._servers = [url.strip() for url in urls.split(",")]
        self._creds = settings.creds
        self._history_size = history_size
        self._reconnected_cb = reconnected

    def require(self) -> Client:
        nc = self.nc
        if nc is None or not nc.is_connected:
            # An OSError, so every caller's UNAVAILABLE handling takes it (the tasks live on).
            raise ConnectionError("not connected to NATS")
        return nc

    async def stream_state(self) -> dict[str, Any]:
        info = await api(self.require(), f"$JS.API.STREAM.INFO.{self.stream}")
        state: dict[str, Any] = info["state"]
        return state

    def unsent(self) -> int:
        """Bytes the client holds for NATS that no socket has taken yet (a stalled link shows
        here first; nats-py's public ``pending_data_size``)."""
        nc = self.nc
        return nc.pending_data_size if nc is not None else 0

    def withdraw(self, token: bytes) -> None:
        """A request carrying ``token`` timed out: it must never be sent (``compat_nats``)."""
        compat_nats.withdraw(self.nc, token)

    async def connect(self) -> None:
        """Connect and make sure of the stream; raises ``ConfigError`` for a server too old."""
        options: dict[str, Any] = {
            "servers": self._servers,
            "connect_timeout": 2,
            "allow_reconnect": True,
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": 0.5,
            "ping_interval": 5,
            "max_outstanding_pings": 2,
            "pending_size": 0,  # nothing is buffered while NATS is away: see point 6
            "disconnected_cb": self._disconnected,
            "reconnected_cb": self._reconnected,
            "error_cb": self._error,
        }
        if self._creds:
            options["user_credentials"] = self._creds
        nc = Client()
        try:
            # Bounded: with reconnects allowed for ever, a first connect would try for ever.
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await nc.connect(**options)
        except BaseException:
            with contextlib.suppress(*UNAVAILABLE):
                await nc.close()
            raise
        version = nc.connected_server_version
        self.nc = nc
        if (version.major, version.minor) < MIN_VERSION:
            raise ConfigError(
                f"backplane: nats-server {version.major}.{version.minor}.{version.patch} is too "
                "old; the NATS backplane needs "
                f"{MIN_VERSION[0]}.{MIN_VERSION[1]} or newer (atomic batch publish, batched "
                "direct get, consumers filtered on several subjects)"
            )
        try:
            await self._ensure_stream()
        except BaseException:
            # Not usable without its stream: keep_connected connects and tries again.
            await self.close()
            raise
        self.link.regained("connection")

    async def keep_connected(self) -> None:
        """Until connected once (the client reconnects by itself after that)."""
        while self.nc is None:
            await asyncio.sleep(0.5)
            try:
                await self.connect()
            except ConfigError as problem:
                log.error("%s", problem)
                await self.close()
                self.link.lost("connection", str(problem))
                return
            except UNAVAILABLE as problem:
                self.link.lost("connection", problem)
                await self.close()

    async def close(self) -> None:
        nc, self.nc = self.nc, None
        if nc is not None:
            with contextlib.suppress(*UNAVAILABLE):
                await nc.close()

    async def _disconnected(self) -> None:
        self.link.lost("connection", "disconnected")

    async def _reconnected(self) -> None:
        self.link.regained("connection")
        self._reconnected_cb()

    async def _error(self, problem: Exception) -> None:
        log.debug("NATS client: %s", problem)

    def _stream_config(self) -> dict[str, Any]:
        """The stream settings the guarantees need (an operator's replicas are kept beside)."""
        ttl_ns = int(self.ttl * 1e9)
        return {
            "name": self.stream,
            "subjects": self.subjects.streams(),
            "storage": "file",
            "retention": "limits",
            "discard": "old",
            "max_msgs_per_subject": self._history_size,
            "max_age": ttl_ns,
            "duplicate_window": ttl_ns,
            "allow_direct": True,
            "allow_atomic": True,
            # Tickets expire by a per-message TTL (``Nats-TTL``); once on, JetStream keeps it on.
            "allow_msg_ttl": True,
            # A Durable Stream's state record replaces its previous one (``nats_streams``).
            "allow_rollup_hdrs": True,
        }

    async def _ensure_stream(self) -> None:
        """Create the stream, or bring its limits to this config (other settings, e.g. replicas
        set by an operator, are kept)."""
        nc = self.require()
        name = self.stream
        try:
            info = await api(nc, f"$JS.API.STREAM.INFO.{name}")
        except ApiError as error:
            if error.code != STREAM_NOT_FOUND:
                raise
            wanted = self._stream_config()
            wanted["metadata"] = {"ssehub_base": str(time.time_ns() // 1000)}
            try:
                info = await api(nc, f"$JS.API.STREAM.CREATE.{name}", wanted)
            except ApiError:  # another process created it first
                info = await api(nc, f"$JS.API.STREAM.INFO.{name}")
        current: dict[str, Any] = info["config"]
        wanted = self._stream_config()
        if any(current.get(k) != v for k, v in wanted.items()):
            log.info("NATS stream %s: setting its limits to this hub's configuration", name)
            info = await api(nc, f"$JS.API.STREAM.UPDATE.{name}", current | wanted)
        self.base = int((info["config"].get("metadata") or {}).get("ssehub_base", 0))
