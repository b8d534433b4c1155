"""The live reads: ``GET ?live=sse`` and ``GET ?live=long-poll`` (sections 5.7, 5.8), each
one ``Hub.stream`` call with the dialect's views (``hub.dialects.durable.wire``).

SSE: the core replays the history after the offset (``Ask.last_event_id`` is the offset's
position) and goes live, in the stream kind's view; a reader already at the tail first gets a
control frame with ``upToDate`` (written with the head, ``Opener``), and one at the tail of a
closed stream gets only the closing control frame. Long-poll: a catch-up page when there is
data; else the core streams the long-poll view into a ``Waiter`` that only notes that
something came (an event, or the close), then the request reads a page as a catch-up does, or
answers ``204`` when ``durable_long_poll`` seconds pass first.

Both are streams like the native ones: counted, limited per address (``subscribe_rate``,
``max_client_streams``) and refused as the AI SDK's route refuses (JSON ``429``/``503`` with
``Retry-After``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

from aiohttp import web

from hub.ask import AllDeleted, Ask, AtCapacity
from hub.backplane import BackplaneUnavailable
from hub.backplane.streams import StreamState, media_type
from hub.dialects.durable import offsets
from hub.dialects.durable.codec import Kind, kind_of
from hub.dialects.durable.context import Context, fail
from hub.dialects.durable.reads import check_kept, offset_param, page_response, read_page
from hub.dialects.durable.wire import control
from hub.outlet import SSE_HEADERS, Outlet
from hub.view import View

__all__ = ["Opener", "Waiter", "long_poll", "sse"]


class Opener(Outlet):
    """An ``Outlet`` whose first write starts with ``first`` (the reader's first control)."""

    __slots__ = ("_first",)

    def __init__(
        self,
        request: web.BaseRequest,
        headers: Mapping[str, str],
        ack_timeout: float | None,
        first: bytes,
    ) -> None:
        super().__init__(request, headers, ack_timeout)
        self._first = first

    async def write_head(self, data: bytes, max_pending: int, stall: float) -> bool:
        first, self._first = self._first, b""
        return await super().write_head(first + data, max_pending, stall)


class _Tap(asyncio.WriteTransport):
    """Where the core writes a waiting long-poll's live bytes: any byte wakes it."""

    def __init__(self, waiter: Waiter) -> None:
        super().__init__()
        self._waiter = waiter

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if data:
            self._waiter.wake()

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def abort(self) -> None:
        self._waiter.wake()


class Waiter:
    """A ``hub.writer.Sink`` that sends nothing: it wakes the request when bytes come."""

    framed = False

    def __init__(self) -> None:
        self.woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tap = _Tap(self)

    @property
    def transport(self) -> asyncio.WriteTransport | None:
        return self._tap

    def wake(self) -> None:
        if not self.woken.done():
            self.woken.set_result(None)

    async def open(self) -> None:
        pass

    async def write_head(self, data: bytes, max_pending: int, stall: float) -> bool:
        if data:
            self.wake()
        return True

    def abort(self) -> None:
        self.wake()


def _refuse(ctx: Context, headers: dict[str, str], status: int, why: str) -> web.Response:
    ctx.metrics.subscribers_refused += 1
    return fail(status, why, headers, {"Retry-After": "1"})


async def _admit(
    ctx: Context, request: web.Request, channel: str, headers: dict[str, str]
) -> str | web.Response:
    """The client's address, counted as one more stream; or the refusal (429, 503)."""
    client = ctx.addresses.of(request)
    refused = await ctx.admission.admit(client, (channel,))
    if refused is not None:
        ctx.refusals.refused(client, refused.setting, "a stream")
        return _refuse(ctx, headers, 429 if refused.per_address else 503, refused.why)
    return client


async def _stream(
    ctx: Context, ask: Ask, view: View, sink: Outlet | Waiter, headers: dict[str, str]
) -> web.Response | None:
    """One ``Hub.stream``; the refusal to answer when it raised before the headers."""
    try:
        await ctx.hub.stream(ask, view, sink)
    except AtCapacity as why:
        limit = str(why).removesuffix(" reached")
        if limit.isidentifier():
            ctx.refusals.refused(ask.client, limit, "a stream")
        status = 429 if limit == "max_client_channels" else 503
        return _refuse(ctx, headers, status, f"the hub is at capacity ({why})")
    except BackplaneUnavailable:
        return _refuse(ctx, headers, 503, "the backplane is unavailable")
    except AllDeleted:
        return fail(404, "the stream was deleted", headers)
    return None


async def sse(
    ctx: Context,
    request: web.Request,
    channel: str,
    state: StreamState,
    headers: dict[str, str],
    deadline: float | None,
) -> web.StreamResponse:
    given = offset_param(request)
    if given is None:
        why = "live=sse needs an offset (-1: from the start, now: from the tail)"
        return fail(400, why, headers)
    after = offsets.parse_offset(given, state.start, state.tail)
    if after > state.start:
        await check_kept(ctx, channel, state, after)  # 410 when its events are gone
    kind = kind_of(media_type(state.shape.content_type))
    wire = ctx.wire
    wire.cursors.echoed(request.query.get("cursor"))
    wire.tails.saw(channel, state.tail)
    encoding = {"Stream-SSE-Data-Encoding": "base64"} if kind is Kind.BINARY else {}
    first = b""
    if after >= state.tail:
        offset = offsets.format_offset(state.tail)
        first = control(offset, wire.cursors.current(), True, closed=state.closed)
        if state.closed:  # nothing will ever come: the closing control frame, and the end
            response = web.StreamResponse(headers=headers | encoding | SSE_HEADERS)
            await response.prepare(request)
            await response.write(first)
            await response.write_eof()
            return response
    admitted = await _admit(ctx, request, channel, headers)
    if isinstance(admitted, web.Response):
        return admitted
    try:
        ack = ctx.config.tcp_user_timeout or ctx.config.heartbeat
        outlet = Opener(request, headers | encoding, ack, first)
        ask = Ask((channel,), str(after), (), admitted, deadline)
        refused = await _stream(ctx, ask, wire.sse[kind], outlet, headers)
    finally:
        ctx.admission.leave(admitted, (channel,))
    return refused or outlet


async def long_poll(
    ctx: Context,
    request: web.Request,
    channel: str,
    state: StreamState,
    headers: dict[str, str],
    deadline: float | None,
) -> web.Response:
    given = offset_param(request)
    if given is None:
        return fail(400, "live=long-poll needs an offset (now: wait from the tail)", headers)
    after = offsets.parse_offset(given, state.start, state.tail)
    wire = ctx.wire
    wire.cursors.echoed(request.query.get("cursor"))
    page = await read_page(ctx, channel, state, after)
    if not page.events and not state.closed:
        admitted = await _admit(ctx, request, channel, headers)
        if isinstance(admitted, web.Response):
            return admitted
        try:
            ask = Ask((channel,), str(after), (), admitted, deadline)
            refused = await _wait(ctx, ask, headers)
        finally:
            ctx.admission.leave(admitted, (channel,))
        if refused is not None:
            return refused
        assert ctx.streams is not None
        now = await ctx.streams.stream_state(channel, touch=True)
        if now is None:
            return fail(404, f"no stream at {channel!r} (deleted)", headers)
        state = now
        page = await read_page(ctx, channel, state, after)
    cursor = {"Stream-Cursor": str(wire.cursors.current())}
    if page.events:
        return page_response(request, state, page, headers | cursor)
    answer = headers | {"Stream-Next-Offset": offsets.format_offset(after)}
    answer["Stream-Up-To-Date"] = "true"
    if state.closed:
        answer["Stream-Closed"] = "true"
    else:
        answer |= cursor
    return web.Response(status=204, headers=answer)


async def _wait(ctx: Context, ask: Ask, headers: dict[str, str]) -> web.Response | None:
    """Stream the long-poll view until something comes or ``durable_long_poll`` passes."""
    waiter = Waiter()
    task = asyncio.create_task(_stream(ctx, ask, ctx.wire.long_poll, waiter, headers))
    try:
        await asyncio.wait(
            (task, waiter.woken),
            timeout=ctx.config.durable_long_poll,
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return task.result() if not task.cancelled() else None
