"""The AI SDK's UI message stream as a ``hub.view.Format``: what its transport can parse.

The transport (``ai``'s ``parseJsonEventStream``) ignores ``event:`` and parses *every*
event's ``data`` as a UI message chunk, but ``[DONE]``: one frame that is no chunk (a native
``event: close``, ``event: reset``, a string's text) fails the whole resume. So:

- an event whose data is one line of JSON object (what ``POST /publish`` stores for
  ``"data": {...}``; told by its first and last characters, not parsed) is sent as
  ``data: <that JSON>`` (the native frame from its ``data:`` line, the ``id:`` and ``event:``
  lines left out); any other event (a string, an array) is no chunk and is skipped (empty
  bytes, which the writer writes as nothing);
- the end of a channel (closed, or deleted) is ``data: [DONE]``; the core then ends the stream;
- the head and a reset are empty: a resume here always replays from the start (``from=start``
  has no reset), and the reconnection hint is for EventSource, which this client is not.

``event`` is called once per event per view on the live path (``hub.hub.deliver``), never per
subscriber; a replay slices each history event for the stream that reads it, as the native
view hands out each event's stored frame: a slice of bytes already in memory.
"""

from __future__ import annotations

from hub import sse
from hub.backplane import Reset
from hub.events import Event
from hub.view import View

__all__ = ["AI_SDK", "DONE", "AiSdkFormat"]

#: The last frame of a finished answer.
DONE = b"data: [DONE]\n\n"


class AiSdkFormat:
    __slots__ = ()
    native = False
    heartbeat = sse.HEARTBEAT  # a comment: skipped by the transport's parser

    def event(self, event: Event) -> bytes:
        frame = event.frame
        start = frame.find(b"\ndata: {") + 1  # after the id line (and an event line, if any)
        # one line from "{" to "}": a JSON object as publish stores it (a string such as
        # "{oops" would fail the transport's parse, and the whole resume with it)
        if start == 0 or frame.find(b"\n", start) != len(frame) - 2 or frame[-3:-2] != b"}":
            return b""  # not one line of JSON object: no chunk
        return frame[start:]

    def tick(self, frame: bytes) -> bytes:
        return b""  # (clock channels are refused by the route)

    def head(self, retry_ms: int) -> bytes:
        return b""

    def reset(self, reset: Reset) -> bytes:
        return b""

    def close(self, channel: str) -> bytes:
        return DONE


#: The one view of this dialect: every AI SDK stream shares each event's frame.
AI_SDK = View(AiSdkFormat())
