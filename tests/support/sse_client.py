"""A spec-conforming EventSource stream reader for tests (WHATWG HTML, "Server-sent events").

It interprets the bytes exactly as a browser does (CR, LF and CRLF line ends, one leading space
stripped, events dispatched only at a blank line, ``id`` persisting, comments ignored), so a test
that reads ``event.data`` asserts what a browser's ``event.data`` would be.
"""

from __future__ import annotations

import asyncio
import codecs
import re
from dataclasses import dataclass, field

import aiohttp

_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass
class Message:
    data: str
    event: str = "message"
    id: str = ""  # the stream's last event id when this message was dispatched
    has_id: bool = False  # whether this very frame carried an id: line


@dataclass
class Parser:
    """Feed bytes, collect dispatched messages; keeps the state a browser keeps."""

    last_event_id: str = ""
    retry: int | None = None
    comments: list[str] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    _buffer: str = ""
    _data: list[str] = field(default_factory=list)
    _event: str = ""
    _frame_id: bool = False
    _pending_cr: bool = False
    _decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )

    def feed(self, chunk: bytes) -> None:
        text = self._decoder.decode(chunk)
        if self._pending_cr and text.startswith("\n"):
            text = text[1:]  # the LF of a CRLF split across two reads
        self._pending_cr = False
        buffer = self._buffer + text
        start = 0
        for match in _LINE_END.finditer(buffer):
            if match.group() == "\r" and match.end() == len(buffer):
                self._pending_cr = True  # may be the first half of a CRLF
            self._line(buffer[start : match.start()])
            start = match.end()
        self._buffer = buffer[start:]

    def _line(self, line: str) -> None:
        if line == "":
            self._dispatch()
            return
        if line.startswith(":"):
            self.comments.append(line[1:])
            return
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self.last_event_id = value
            self._frame_id = True
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry = int(value)

    def _dispatch(self) -> None:
        if self._data:
            self.messages.append(
                Message(
                    data="\n".join(self._data),
                    event=self._event or "message",
                    id=self.last_event_id,
                    has_id=self._frame_id,
                )
            )
        self._data = []
        self._event = ""
        self._frame_id = False


class Stream:
    """An open event stream over a real HTTP connection."""

    #: Streams not closed yet: a fixture closes what a test left open.
    unclosed: set[Stream] = set()

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        Stream.unclosed.add(self)
        self.parser = Parser()
        self._read = 0
        self.ended = False

    @property
    def last_event_id(self) -> str:
        return self.parser.last_event_id

    async def next(self, timeout: float = 5.0) -> Message:
        """The next dispatched message; TimeoutError if none comes in time."""
        async with asyncio.timeout(timeout):
            while self._read >= len(self.parser.messages):
                chunk = await self.response.content.readany()
                if not chunk:
                    self.ended = True
                    raise EOFError("the stream ended")
                self.parser.feed(chunk)
        message = self.parser.messages[self._read]
        self._read += 1
        return message

    async def take(self, count: int, timeout: float = 5.0) -> list[Message]:
        return [await self.next(timeout) for _ in range(count)]

    async def quiet(self, seconds: float) -> list[Message]:
        """Messages that arrive within ``seconds`` (asserting nothing more came is the use)."""
        found: list[Message] = []
        try:
            while True:
                found.append(await self.next(seconds))
        except (TimeoutError, EOFError):
            return found

    async def until_end(self, timeout: float = 5.0) -> list[Message]:
        found: list[Message] = []
        try:
            while True:
                found.append(await self.next(timeout))
        except EOFError:
            return found

    async def close(self) -> None:
        Stream.unclosed.discard(self)
        self.response.close()

    @classmethod
    async def close_all(cls) -> None:
        for stream in list(cls.unclosed):
            await stream.close()


async def open_stream(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str] | None = None,
    expect_status: int = 200,
) -> Stream:
    response = await session.get(
        url, headers={"Accept": "text/event-stream", **(headers or {})}, timeout=None
    )
    assert response.status == expect_status, (response.status, await response.text())
    return Stream(response)
