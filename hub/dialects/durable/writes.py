"""The writes: ``PUT`` (create), ``POST`` (append, close), ``DELETE``; the protocol's sections
5.1-5.4, with the backplane's ``Streams`` doing every check that must be atomic with the
events (``hub.backplane.streams``).

Each answers with its headers (``Stream-Next-Offset``, ``Stream-Closed``, the producer's)
and, for an error, a JSON body: clients read the status and headers, a person the message.
Forks (``Stream-Forked-From``) are not served: 501.
"""

from __future__ import annotations

from aiohttp import web

from hub.backplane.streams import Appended, Outcome, Producer, Shape, StreamState, media_type
from hub.dialects.durable import offsets
from hub.dialects.durable.codec import drafts_of, kind_of
from hub.dialects.durable.context import Context, body_of, fail
from hub.events import InvalidInput

__all__ = ["append", "create", "delete", "state_headers"]

#: A content type as the protocol's reference server accepts one; else the default.
DEFAULT_TYPE = "application/octet-stream"
_FORK_HEADERS = ("Stream-Forked-From", "Stream-Fork-Offset", "Stream-Fork-Sub-Offset")


def state_headers(state: StreamState, offset: int | None = None) -> dict[str, str]:
    """``Stream-Next-Offset`` (the tail, or ``offset``) and ``Stream-Closed`` when closed."""
    found = {"Stream-Next-Offset": offsets.format_offset(state.tail if offset is None else offset)}
    if state.closed:
        found["Stream-Closed"] = "true"
    return found


def _content_type(request: web.Request) -> str:
    given = request.headers.get("Content-Type", "").strip()
    kind, _, rest = media_type(given).partition("/")
    if not kind or not rest or len(given) > 200 or not given.isascii() or not given.isprintable():
        return DEFAULT_TYPE
    return given


async def create(
    ctx: Context, request: web.Request, channel: str, headers: dict[str, str]
) -> web.Response:
    if any(name in request.headers for name in _FORK_HEADERS):
        return fail(501, "forks (Stream-Forked-From) are not served by this hub", headers)
    assert ctx.streams is not None
    token = ctx.writer(request, channel)
    ttl = offsets.ttl(request.headers.get("Stream-TTL"))
    expires_at = offsets.expires_at(request.headers.get("Stream-Expires-At"))
    if ttl is not None and expires_at is not None:
        raise InvalidInput("send Stream-TTL or Stream-Expires-At, not both")
    closed = offsets.is_closed(request.headers.get("Stream-Closed"))
    shape = Shape(_content_type(request), ttl, expires_at)
    body = await body_of(request, ctx.config)
    kind = kind_of(media_type(shape.content_type))
    drafts = drafts_of(channel, kind, body, ctx.config.max_event_bytes, create=True)
    _check_batch(ctx, len(drafts))
    await ctx.spend(request, token, len(drafts))
    created, state = await ctx.streams.create_stream(channel, shape, drafts, closed)
    ctx.metrics.events_published += len(drafts) if created else 0
    answer = headers | state_headers(state) | {"Content-Type": state.shape.content_type}
    if created:
        answer["Location"] = str(request.url)
        return web.Response(status=201, headers=answer)
    if _same(state, shape, closed):
        return web.Response(status=200, headers=answer)
    return fail(409, f"stream {channel!r} exists with another configuration", headers)


def _same(state: StreamState, shape: Shape, closed: bool) -> bool:
    have = state.shape
    return (
        media_type(have.content_type) == media_type(shape.content_type)
        and have.ttl == shape.ttl
        and have.expires_at == shape.expires_at
        and state.closed == closed
    )


def _check_batch(ctx: Context, count: int) -> None:
    if count > ctx.config.max_batch:
        raise InvalidInput(
            f"{count} messages in one request; the limit (max_batch) is {ctx.config.max_batch}",
            413,
        )


async def append(
    ctx: Context, request: web.Request, channel: str, headers: dict[str, str]
) -> web.Response:
    assert ctx.streams is not None
    token = ctx.writer(request, channel)
    given = request.headers
    close = offsets.is_closed(given.get("Stream-Closed"))
    producer = offsets.producer(
        given.get("Producer-Id"), given.get("Producer-Epoch"), given.get("Producer-Seq")
    )
    seq = offsets.stream_seq(given.get("Stream-Seq"))
    body = await body_of(request, ctx.config)
    if not body and not close:
        raise InvalidInput("the body is empty: append something, or send Stream-Closed: true")
    content_type = media_type(given.get("Content-Type", "")) if body else None
    if body and not content_type:
        raise InvalidInput("Content-Type is required with a body")
    state = await ctx.streams.stream_state(channel, touch=False)
    if state is None:
        return fail(404, f"no stream at {channel!r}", headers)
    drafts = []
    if content_type is not None:
        if content_type != media_type(state.shape.content_type):  # closed first, then this
            if state.closed:
                return fail(409, f"stream {channel!r} is closed", headers, state_headers(state))
            return fail(409, f"stream {channel!r} is {state.shape.content_type}", headers)
        try:
            drafts = drafts_of(
                channel, kind_of(content_type), body, ctx.config.max_event_bytes, create=False
            )
        except InvalidInput:
            if state.closed:  # the stream's closure comes first (section 5.2's precedence)
                return fail(409, f"stream {channel!r} is closed", headers, state_headers(state))
            raise
        _check_batch(ctx, len(drafts))
    await ctx.spend(request, token, len(drafts))
    done = await ctx.streams.append_stream(
        channel,
        drafts,
        content_type=content_type,
        producer=producer,
        stream_seq=seq,
        close=close,
    )
    if done.outcome is Outcome.APPENDED:
        ctx.metrics.events_published += len(done.ids)
    return _appended(done, producer, bool(body), channel, headers)


def _appended(
    done: Appended, producer: Producer | None, body: bool, channel: str, headers: dict[str, str]
) -> web.Response:
    state, outcome = done.state, done.outcome
    if state is None or outcome is Outcome.MISSING:
        return fail(404, f"no stream at {channel!r}", headers)
    echo = {} if producer is None else {"Producer-Epoch": str(producer.epoch)}
    if outcome is Outcome.APPENDED:
        seq = {} if producer is None else {"Producer-Seq": str(producer.seq)}
        status = 200 if producer is not None and body else 204  # (a close alone: 204)
        return web.Response(status=status, headers=headers | state_headers(state) | echo | seq)
    if outcome is Outcome.DUPLICATE:
        seq = {"Producer-Seq": str(done.last_seq)} if done.last_seq is not None else {}
        return web.Response(status=204, headers=headers | state_headers(state) | echo | seq)
    if outcome is Outcome.CLOSED:
        if not body and producer is None:  # closing a closed stream again: idempotent
            return web.Response(status=204, headers=headers | state_headers(state))
        return fail(409, f"stream {channel!r} is closed", headers, state_headers(state))
    if outcome is Outcome.MISMATCH:
        return fail(409, f"stream {channel!r} is {state.shape.content_type}", headers)
    if outcome is Outcome.STALE_EPOCH:
        epoch = {"Producer-Epoch": str(done.epoch)}
        why = f"producer epoch is stale: the current one is {done.epoch}"
        return fail(403, why, headers, epoch)
    if outcome is Outcome.BAD_SEQ:
        return fail(400, "a new producer epoch must start at Producer-Seq 0", headers)
    if outcome is Outcome.GAP:
        expected, received = str(done.expected_seq), str(producer.seq if producer else "")
        gap = {"Producer-Expected-Seq": expected, "Producer-Received-Seq": received}
        return fail(409, f"producer sequence gap: expected {expected}", headers, gap)
    return fail(409, "Stream-Seq must be greater than the last one", headers)


async def delete(
    ctx: Context, request: web.Request, channel: str, headers: dict[str, str]
) -> web.Response:
    assert ctx.streams is not None
    await ctx.spend(request, ctx.writer(request, channel), 1)
    if not await ctx.streams.delete_stream(channel):
        return fail(404, f"no stream at {channel!r}", headers)
    return web.Response(status=204, headers=headers)
