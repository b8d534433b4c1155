"""What a stream looks like on the wire: its ``Format``, and the ``View`` the core groups by.

The core fans out ``Event``s; a stream carries a ``View``, and a channel keeps its live streams
grouped by view (``hub.channel``), so an event is encoded once per view present on the channel,
never once per subscriber. A view is a format and a filter (``hub.filters``, None for none):
``View.filtered`` interns the views of one format per filter, so streams with the same format
*and* the same filter share one view, one group, one filter test and one encoding per event.

The native format (``SSE``) is the identity on the backplane's ready frame (``Event.frame``: the
Server-Sent Events bytes encoded once at publish), so the native hot path costs one dict entry
per channel and no call per event. Another wire dialect (Durable Streams' ``event: data`` /
``event: control`` frames, the AI SDK's ``data: <json>`` chunks and ``data: [DONE]``) is a
``Format`` of its own whose ``event`` derives its bytes from the event (its id, channel and
native frame) once per event, plus its control frames; see ``hub.hub`` for how a dialect plugs
in.
"""

from __future__ import annotations

import weakref
from typing import Protocol

import orjson

from hub import sse
from hub.backplane import Reset
from hub.events import Event
from hub.filters import Filter

__all__ = ["RESET_EVENT", "SSE", "Format", "NativeSse", "View"]

#: The event type of the frame that says a resume could not be exact.
RESET_EVENT = "reset"


class Format(Protocol):
    """The bytes of one wire dialect: its events and its control frames."""

    #: True only when ``event`` is the identity on ``Event.frame`` (the core then skips the call)
    native: bool
    #: the comment a quiet stream gets every heartbeat interval
    heartbeat: bytes

    def event(self, event: Event) -> bytes:
        """An event's bytes on this wire (called once per event per view, never per stream)."""

    def tick(self, frame: bytes) -> bytes:
        """An ephemeral channel's frame (a clock tick: native SSE bytes without an id)."""

    def head(self, retry_ms: int) -> bytes:
        """The first bytes of every stream (native: the reconnection-delay hint)."""

    def reset(self, reset: Reset) -> bytes:
        """Why a resume could not be exact (first bytes after the head)."""

    def close(self, channel: str) -> bytes:
        """The channel was deleted or closed: the last frame of it on every stream carrying it
        (the core then takes the channel off the stream)."""


class NativeSse:
    """The hub's own Server-Sent Events dialect: the backplane's frames as they are."""

    __slots__ = ()
    native = True
    heartbeat = sse.HEARTBEAT

    def event(self, event: Event) -> bytes:
        return event.frame

    def tick(self, frame: bytes) -> bytes:
        return frame

    def head(self, retry_ms: int) -> bytes:
        return sse.retry(retry_ms)

    def reset(self, reset: Reset) -> bytes:
        data = orjson.dumps({"reason": reset.reason, "oldest_id": reset.oldest_id})
        return sse.encode(RESET_EVENT, data.decode())

    def close(self, channel: str) -> bytes:
        return sse.close_frame(channel)


class View:
    """A group key: streams of one view share each event's filter test and encoding.

    Compared by identity: a dialect makes its unfiltered view once (at wiring) and its filtered
    ones through ``filtered``, which hands out one object per distinct filter, so a channel holds
    one group per view and the key's hash is the object's id, the cheapest there is. A filtered
    view lives as long as a stream holds it (the table keeps it weakly): filters made up by
    clients cost nothing once their streams are gone.
    """

    __slots__ = ("__weakref__", "_filtered", "filter", "format", "native")

    def __init__(self, format: Format, filter: Filter | None = None) -> None:
        self.format = format
        self.native = format.native
        #: the events its streams get (None: all); reset and close frames always pass
        self.filter = filter
        self._filtered: weakref.WeakValueDictionary[object, View] | None = None

    def encode(self, event: Event) -> bytes:
        return event.frame if self.native else self.format.event(event)

    def passes_frame(self, frame: bytes) -> bool:
        """Whether an ephemeral channel's frame (a tick) passes this view's filter."""
        return self.filter is None or self.filter.passes_frame(frame)

    def filtered(self, filter: Filter | None) -> View:
        """This format's view for ``filter``: the same object for every equal filter."""
        if filter is None:
            return self
        table = self._filtered
        if table is None:
            table = self._filtered = weakref.WeakValueDictionary()
        view = table.get(filter.key)
        if view is None:
            view = table[filter.key] = View(self.format, filter)
        return view


#: The native dialect's view, shared by every native stream.
SSE = View(NativeSse())
