"""The optional ``Tickets``, ``Deletion`` and ``Closing`` interfaces of a shared backplane, as
real methods, forwarded to the backend's own private-channel part.

Redis and NATS each keep tickets, deletion and closing in a module of their own
(``redis_private``, ``nats_private``) with the same six methods; the backplane class must still
carry the interfaces' method names (``issue_ticket``, ``delete_channel``, ...) so that the hub's
``isinstance`` checks find them. This mixin is that forwarding, written once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

__all__ = ["PrivateFront", "PrivatePart"]


class PrivatePart(Protocol):
    """What ``redis_private.PrivateChannels`` and ``nats_private.PrivateChannels`` both are."""

    async def issue(self, ticket: str, channels: Sequence[str], ttl: float) -> None: ...
    async def spend(self, ticket: str) -> list[str] | None: ...
    async def delete(self, channel: str, anyway: bool) -> bool | None: ...
    def deleted(self, channels: Sequence[str]) -> list[str]: ...
    async def close(self, channel: str) -> bool | None: ...
    def closed(self, channels: Sequence[str]) -> list[str]: ...


class PrivateFront:
    """Mixin: ``Tickets``, ``Deletion`` and ``Closing`` over ``self._private``."""

    _private: PrivatePart

    async def issue_ticket(self, ticket: str, channels: Sequence[str], ttl: float) -> None:
        await self._private.issue(ticket, channels, ttl)

    async def spend_ticket(self, ticket: str) -> list[str] | None:
        return await self._private.spend(ticket)

    async def delete_channel(self, channel: str, anyway: bool) -> bool | None:
        return await self._private.delete(channel, anyway)

    def deleted(self, channels: Sequence[str]) -> list[str]:
        return self._private.deleted(channels)

    async def close_channel(self, channel: str) -> bool | None:
        return await self._private.close(channel)

    def closed(self, channels: Sequence[str]) -> list[str]:
        return self._private.closed(channels)
