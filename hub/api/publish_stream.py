"""``POST /publish/stream``: one long NDJSON request of events, its receipts streamed back.

For services that publish a lot: one event per line, each line a ``POST /publish`` item
(``{"channel", "event", "data"}``, checked by the same code, ``publish.batch_item``), and one
answer line per event line, in order: its receipt ``{"id", "channel", "subscribers"}``, or
``{"line": N, "error": "...", "status": S}`` (N counts every line of the body from 1, blank
ones too; S is the status ``POST /publish`` would have answered). Blank lines get no answer.

A bad line is reported and the stream goes on, as a Kafka or NATS producer reports each
message: nothing of that line is published, every other line is. So the answers are as
many as the non-blank lines, and the k-th answer belongs to the k-th of them, even when the
backplane refuses (a deleted channel: 410 for its lines only; the backplane away: 503 for the
lines of that batch). The stream itself ends early only when the body stops arriving for
``body_timeout`` (a last 408 line), when the client reads no answer for ``body_timeout``
(the connection is cut: nothing could be written to it anyway), or when the hub shuts down:
the lines already read are answered, then a last 503 line names the first line not read, and
the response ends, so a shutdown is not held up for ``shutdown_timeout`` by a stream that would
never end by itself, and the client knows exactly where to go on from on another hub.

Speed is the point, so nothing is awaited per line: the body is read a chunk at a time, the
complete lines of a chunk are checked, published in one ``Hub.publish`` (``max_batch`` drafts
at most each) and answered in one write. Everything is bounded, so a stream of any length costs
a fixed amount of memory:

- one chunk in flight: while the backplane stores a batch, the body is not read; aiohttp stops
  reading the socket once its buffer holds 128 KiB, so the client's writes block;
- the answers are written with drain: a client that does not read them fills the socket
  buffers, the write waits, and reading stops as above;
- a line is kept whole up to ``max_line_bytes`` (room for a ``max_event_bytes`` event written
  with escapes and spaces); a longer one is answered 413 and read past, not kept
  (``hub.api.ndjson_lines``, the line splitter).

The publish rate (``publish_rate``, the same bucket as the other publish routes) is kept by
waiting, not refusing: a stream over its rate is read more slowly, as a Kafka broker throttles a
producer over its quota. Streamed lines carry no idempotency key: the backplane's keys are per
publish call, and a key per line would mean a call per line, the cost this route exists to
avoid. Each received receipt says its line is stored; after a broken connection, the lines
without one may or may not be (at most one chunk's worth were in flight).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import orjson
from aiohttp import web

from hub.api.ndjson_lines import Lines, max_line_bytes
from hub.api.publish import batch_item, not_published
from hub.api.publishers import Publishers
from hub.api.responses import answer, cors_headers
from hub.backplane import BackplaneFull, BackplaneUnavailable, ChannelDeleted
from hub.events import Draft, InvalidInput
from hub.grants import Patterns
from hub.hub import Hub

__all__ = ["CONTENT_TYPE", "add_publish_stream_routes"]

CONTENT_TYPE = "application/x-ndjson"
_HEADERS = {"Content-Type": CONTENT_TYPE}
_DUMPS_LINE = orjson.OPT_APPEND_NEWLINE


class _Stopping(Exception):
    """Raised by a publish stream's body reads once the hub shuts down (``_Stream.stop``)."""


def _error_line(line: int, problem: InvalidInput) -> bytes:
    return orjson.dumps(
        {"line": line, "error": str(problem), "status": problem.status}, None, _DUMPS_LINE
    )


class _Stream:
    """One request's loop: read a chunk, check its lines, publish them, write their answers."""

    def __init__(
        self, hub: Hub, publishers: Publishers, request: web.Request, token: str | None
    ) -> None:
        self._hub = hub
        self._config = hub.config
        self._publishers = publishers
        self._request = request
        self._token = token
        self._max_line = max_line_bytes(hub.config)

    async def run(self, response: web.StreamResponse, scope: Patterns | None) -> None:
        content = self._request.content
        lines = Lines(self._max_line)
        timeout = self._config.body_timeout
        while True:
            try:
                async with asyncio.timeout(timeout):
                    chunk = await content.readany()
            except TimeoutError:
                problem = InvalidInput(
                    f"no data for body_timeout ({timeout:g} s): the stream ends here", 408
                )
                await self._write(response, _error_line(lines.number + 1, problem))
                response.force_close()
                return
            except _Stopping:
                problem = InvalidInput(
                    "the hub is shutting down: this line and the ones after it were not read; "
                    "send them again, to another hub", 503,
                )  # fmt: skip
                await self._write(response, _error_line(lines.number + 1, problem))
                response.force_close()
                return
            if chunk:
                first, complete, too_long = lines.feed(chunk)
            else:
                (first, complete), too_long = lines.rest(), None
            out = await self._answer(complete, first, scope)
            if too_long is not None:
                out += _error_line(too_long, self._too_long())
            if out:
                await self._write(response, out)
            if not chunk:
                return

    def stop(self) -> None:
        """End the stream at its next read of the body (the chunk in hand is answered first):
        every later read raises ``_Stopping``, a read waiting now too."""
        self._request.content.set_exception(_Stopping())

    def _too_long(self) -> InvalidInput:
        return InvalidInput(
            f"the line is longer than {self._max_line} bytes (4 x max_event_bytes + 4096)", 413
        )

    async def _write(self, response: web.StreamResponse, out: bytes) -> None:
        """Write with drain, within ``body_timeout``: a client that reads no answer for that
        long is cut off (raises ``ConnectionResetError``)."""
        try:
            async with asyncio.timeout(self._config.body_timeout):
                await response.write(out)
        except TimeoutError:
            transport = self._request.transport
            if transport is not None:
                transport.abort()
            raise ConnectionResetError("the client read no answer for body_timeout") from None

    async def _answer(self, lines: list[bytes], first: int, scope: Patterns | None) -> bytes:
        """Check ``lines`` (the first is line number ``first``), publish the good ones, and
        return the answer lines, in order."""
        config = self._config
        max_line = self._max_line
        answers: list[bytes] = []  # the error lines known now; receipts filled in after
        drafts: list[Draft] = []
        waiting: list[tuple[int, int]] = []  # per draft: its answer's index, its line number
        for number, raw in enumerate(lines, first):
            if not raw or raw.isspace():
                continue
            try:
                if len(raw) > max_line:
                    raise self._too_long()
                try:
                    item = orjson.loads(raw)
                except orjson.JSONDecodeError as problem:
                    raise InvalidInput(f"the line is not valid JSON: {problem}") from None
                drafts.append(batch_item(item, config, scope))
                waiting.append((len(answers), number))
                answers.append(b"")
            except InvalidInput as problem:
                answers.append(_error_line(number, problem))
        if drafts:
            outcomes = await self._publish_all(drafts)
            for (index, number), outcome in zip(waiting, outcomes, strict=True):
                answers[index] = (
                    outcome if isinstance(outcome, bytes) else _error_line(number, outcome)
                )
        return b"".join(answers)

    async def _publish_all(self, drafts: list[Draft]) -> list[bytes | InvalidInput]:
        """Publish in batches of ``max_batch``: per draft, its receipt line or why not."""
        step = self._config.max_batch
        outcomes: list[bytes | InvalidInput] = []
        for at in range(0, len(drafts), step):
            outcomes += await self._publish_batch(drafts[at : at + step])
        return outcomes

    async def _publish_batch(self, drafts: Sequence[Draft]) -> list[bytes | InvalidInput]:
        """Publish these drafts as one batch, taking out those the backplane refuses alone."""
        request, token, publishers = self._request, self._token, self._publishers
        # Over publish_rate: wait (so the stream is read more slowly). A token bucket refills
        # with time, not on an event, so sleeping the time it names is the way to wait for it.
        while wait := await publishers.wait(request, token, len(drafts)):  # noqa: ASYNC110
            await asyncio.sleep(wait)
        outcomes: dict[int, bytes | InvalidInput] = {}
        left = list(range(len(drafts)))
        while left:
            try:
                published = await self._hub.publish([drafts[i] for i in left], None)
            except ChannelDeleted as gone:
                # Only the deleted channel's lines are refused; the others are tried again.
                refusal = not_published(gone)
                for i in left:
                    if drafts[i].channel == gone.channel:
                        outcomes[i] = refusal
                left = [i for i in left if i not in outcomes]
                continue
            except BackplaneFull:
                # A limit of the whole batch (max_channels, a store's batch size): one by one,
                # so each line gets its own answer. Rare, so the slow way is fine.
                for i in left:
                    outcomes[i] = await self._publish_one(drafts[i])
                break
            except BackplaneUnavailable as problem:
                refusal = not_published(problem)
                for i in left:
                    outcomes[i] = refusal
                break
            receipts = self._receipts(published.ids)
            for i, receipt in zip(left, receipts, strict=True):
                outcomes[i] = receipt
            break
        return [outcomes[i] for i in range(len(drafts))]

    async def _publish_one(self, draft: Draft) -> bytes | InvalidInput:
        try:
            published = await self._hub.publish([draft], None)
        except (ChannelDeleted, BackplaneFull, BackplaneUnavailable) as problem:
            return not_published(problem)
        return self._receipts(published.ids)[0]

    def _receipts(self, ids: Sequence[str]) -> list[bytes]:
        count = self._hub.census.subscriber_count
        receipts = []
        for ident in ids:
            name = ident.partition(":")[2]
            # orjson's bytes, formatted directly: an id and a channel name hold no character
            # JSON escapes (hub.events.CHANNEL_RE), and a dict per line cost a tenth of the line
            receipts.append(_RECEIPT % (ident.encode(), name.encode(), count(name)))
        return receipts


_RECEIPT = b'{"id":"%b","channel":"%b","subscribers":%d}\n'


def _check_request(request: web.Request) -> None:
    given = request.headers.get("Content-Type", "")
    if given.partition(";")[0].strip().lower() != CONTENT_TYPE:
        raise InvalidInput(
            f"Content-Type must be {CONTENT_TYPE}, not {request.content_type!r}", status=415
        )
    if "Idempotency-Key" in request.headers:
        raise InvalidInput(
            "Idempotency-Key is not taken on /publish/stream: a streamed line is stored once "
            "its receipt is read; use POST /publish for idempotent batches"
        )


def add_publish_stream_routes(app: web.Application, hub: Hub, publishers: Publishers) -> None:
    config = hub.config
    running: set[_Stream] = set()  # ended at shutdown, as subscribers' streams are
    stopping = False

    async def publish_stream(request: web.Request) -> web.StreamResponse:
        headers = cors_headers(config, request)
        try:
            token, scope = publishers.check(request)
            _check_request(request)
            if stopping:
                raise InvalidInput("the hub is shutting down: publish to another hub", 503)
        except InvalidInput as problem:
            return answer(problem, headers)
        response = web.StreamResponse(status=200, headers={**_HEADERS, **headers})
        await response.prepare(request)
        stream = _Stream(hub, publishers, request, token)
        running.add(stream)
        try:
            await stream.run(response, scope)
        except ConnectionResetError:
            return response  # the client went away, or was cut off: nothing more to say
        finally:
            running.discard(stream)
        await response.write_eof()
        return response

    async def stop_streams(app: web.Application) -> None:
        nonlocal stopping
        stopping = True
        for stream in list(running):
            stream.stop()

    app.on_shutdown.append(stop_streams)
    app.router.add_post("/publish/stream", publish_stream)
