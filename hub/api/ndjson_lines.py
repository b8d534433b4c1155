"""The line splitter of ``POST /publish/stream``: a body of NDJSON arriving in chunks of any
size, cut into its complete lines, with line numbers.

Apart from the handler (``hub.api.publish_stream``) because it is pure (bytes in, lines out, no
I/O) and holds the stream's one memory bound: at most one unfinished line is kept, and a line
longer than ``max_line_bytes`` is reported by its number and read past, never kept.
"""

from __future__ import annotations

from hub.config import Config

__all__ = ["Lines", "max_line_bytes"]


def max_line_bytes(config: Config) -> int:
    """The longest line taken: 4 x ``max_event_bytes`` (non-ASCII text escaped as ``\\uXXXX``
    takes up to three times its UTF-8 size, spaces after separators some more) + 4 KiB for
    the channel, the event name and the field names."""
    return 4 * config.max_event_bytes + 4096


class Lines:
    """Splits the body into lines as chunks arrive, keeping at most one unfinished line."""

    def __init__(self, max_line: int) -> None:
        self._max_line = max_line
        self._partial = bytearray()
        self._skipping = False  # inside a line found too long: read past it to its end
        self.number = 0  # of the last line handed out, or reported too long

    def feed(self, chunk: bytes) -> tuple[int, list[bytes], int | None]:
        """The complete lines ``chunk`` ends, with the number of the first, and the number of
        a line found too long (left out of the list; its bytes are dropped up to its end). A
        line found too long always follows the others: they were complete before it."""
        if self._skipping:
            first = chunk.find(b"\n")
            if first < 0:
                return self.number + 1, [], None
            self._skipping = False
            chunk = chunk[first + 1 :]
        start = self.number + 1
        end = chunk.rfind(b"\n")
        if end < 0:
            self._partial += chunk
            return start, [], self._too_long()
        if self._partial:
            self._partial += chunk[:end]
            lines = bytes(self._partial).split(b"\n")
            self._partial.clear()
        else:
            lines = chunk[:end].split(b"\n")
        self._partial += chunk[end + 1 :]
        self.number += len(lines)
        return start, lines, self._too_long()

    def _too_long(self) -> int | None:
        if len(self._partial) <= self._max_line:
            return None
        self._partial.clear()
        self._skipping = True
        self.number += 1
        return self.number

    def rest(self) -> tuple[int, list[bytes]]:
        """At the end of the body: its last line, when it did not end with a newline."""
        start = self.number + 1
        if self._skipping or not self._partial:
            return start, []
        rest = bytes(self._partial)
        self._partial.clear()
        self.number += 1
        return start, [rest]
