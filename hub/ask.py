"""What a wire dialect hands the core for one stream, and what the core may answer before the
response headers (each dialect maps these to its own HTTP answers; see ``hub.hub``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

__all__ = ["AllDeleted", "Ask", "AtCapacity"]


class AtCapacity(Exception):
    """The hub holds ``max_subscribers`` streams or ``max_channels`` channels, or is stopping."""


class AllDeleted(Exception):
    """Every channel a stream asked for is deleted: there is nothing to stream."""


class Ask(NamedTuple):
    """What a client asked a stream for, in any dialect."""

    channels: Sequence[str]  # validated, distinct
    last_event_id: str | None = None  # resume every channel after it
    replay: Sequence[str] = ()  # replay these channels' history from the start (others: live)
    client: str = ""  # the client's address: charged for the channels it brings into being
    deadline: float | None = None  # end the stream at this time.time() (a grant's expiry, a
    # Durable Streams SSE read's ~60 s)
    since: float | None = None  # without last_event_id: the history stored at or after this time
    who: str | None = None  # the grant's ``sub``: presence channels name it (hub.presence)
