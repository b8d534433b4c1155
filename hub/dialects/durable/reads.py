"""The short reads: ``HEAD`` (metadata) and ``GET`` without ``live`` (a catch-up page); the
protocol's sections 5.5 and 5.6. ``read_page`` is shared with the long-poll.

A page is one ``Hub.history`` read of about ``READ_PAGE`` bytes of frames after the offset:
``Stream-Up-To-Date`` when it reached the end, ``Stream-Closed`` when the stream is closed and
the page reached its tail, an ``ETag`` that names the stream (its start position), the range
and the closure, so ``If-None-Match`` answers ``304`` until something changes. A page and its
``304`` say ``Cache-Control: public, max-age=60, stale-while-revalidate=300`` (``private`` for a
channel that needs a grant: ``Context.cache_control``), as the protocol's section 10.1 asks: a
kept page is a prefix of what the offset reads now, whose ``Stream-Next-Offset`` reads on, so
a cache loses nothing; a catch-up at the tail may be answered a minute late, and a reader that
wants appends at once reads live (a cursor in every live answer keeps caches from cycling).
``offset=now`` and ``HEAD`` say ``no-store``. An offset whose events the history no longer
holds (``history_size``, ``history_ttl``, ``max_history_bytes``) is ``410``; a read from the
start (``-1``) begins at the oldest event kept.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from hub.backplane.streams import StreamState, media_type
from hub.dialects.durable import offsets
from hub.dialects.durable.codec import join, kind_of, payload
from hub.dialects.durable.context import Context, fail
from hub.dialects.durable.writes import state_headers
from hub.events import Event, InvalidInput

__all__ = [
    "READ_PAGE",
    "Gone",
    "Page",
    "catch_up",
    "check_kept",
    "head",
    "offset_param",
    "page_response",
    "read_page",
]

#: Bytes of frames one catch-up response reads at most (at least one event).
READ_PAGE = 1 << 20


@dataclass(frozen=True, slots=True)
class Page:
    after: int  # the position read after
    events: list[Event]
    more: bool


class Gone(InvalidInput):
    """The offset's events are no longer kept: 410."""

    def __init__(self, offset: str) -> None:
        super().__init__(f"offset {offset} is older than the events this hub keeps", 410)


def offset_param(request: web.Request) -> str | None:
    """The ``offset`` query parameter: at most one, not empty (400)."""
    found = request.query.getall("offset", [])
    if len(found) > 1:
        raise InvalidInput("give one offset parameter, not several")
    if found and not found[0]:
        raise InvalidInput("the offset parameter is empty: use -1, now, or a Stream-Next-Offset")
    return found[0] if found else None


async def read_page(ctx: Context, channel: str, state: StreamState, after: int) -> Page:
    """The stream's events after ``after``, one page; ``Gone`` when they are not all kept."""
    history = await ctx.hub.history([channel], after, READ_PAGE)
    _check_kept(history.reset is not None, state, after)
    events = [event for event in history.events if event.position > state.start]
    ctx.metrics.events_delivered += len(events)
    return Page(after, events, history.more)


async def check_kept(ctx: Context, channel: str, state: StreamState, after: int) -> None:
    """``Gone`` unless the events after ``after`` are all kept (a look at one event)."""
    _check_kept((await ctx.hub.history([channel], after, 1)).reset is not None, state, after)


def _check_kept(reset: bool, state: StreamState, after: int) -> None:
    if reset and after > state.start:  # (from the start: the oldest event kept will do)
        raise Gone(offsets.format_offset(after))


def page_response(
    request: web.Request, state: StreamState, page: Page, headers: dict[str, str]
) -> web.Response:
    """A page's answer: 200 with its body and headers, or 304 for a matching If-None-Match;
    ``headers`` carry its ``Cache-Control`` (``Context.cache_control``), for both."""
    kind = kind_of(media_type(state.shape.content_type))
    last = page.events[-1].position if page.events else page.after
    up_to_date = not page.more
    closed = state.closed and up_to_date
    tag = f'"{state.start}:{page.after}:{last}{":c" if closed else ""}"'
    answer = headers | {
        "Content-Type": state.shape.content_type,
        "Stream-Next-Offset": offsets.format_offset(last),
        "ETag": tag,
    }
    if up_to_date:
        answer["Stream-Up-To-Date"] = "true"
    if closed:
        answer["Stream-Closed"] = "true"
    if request.headers.get("If-None-Match") == tag:
        return web.Response(status=304, headers=headers | {"ETag": tag})
    body = join((payload(event, kind) for event in page.events), kind)
    return web.Response(status=200, body=body, headers=answer)


async def catch_up(
    ctx: Context, request: web.Request, channel: str, state: StreamState, headers: dict[str, str]
) -> web.Response:
    given = offset_param(request)
    if given == "now":
        return _at_tail(state, headers)
    after = offsets.parse_offset(given, state.start, state.tail)
    page = await read_page(ctx, channel, state, after)
    cache = {"Cache-Control": ctx.cache_control(channel)}
    return page_response(request, state, page, headers | cache)


def _at_tail(state: StreamState, headers: dict[str, str]) -> web.Response:
    """``offset=now``: no data, the tail, never cached (section 8)."""
    kind = kind_of(media_type(state.shape.content_type))
    answer = (
        headers
        | state_headers(state)
        | {
            "Content-Type": state.shape.content_type,
            "Stream-Up-To-Date": "true",
            "Cache-Control": "no-store",
        }
    )
    return web.Response(status=200, body=join((), kind), headers=answer)


async def head(
    ctx: Context, request: web.Request, channel: str, headers: dict[str, str]
) -> web.Response:
    assert ctx.streams is not None
    await ctx.may_read(request, channel)
    state = await ctx.streams.stream_state(channel, touch=False)  # HEAD restarts no TTL
    if state is None:
        return fail(404, f"no stream at {channel!r}", headers)
    shape = state.shape
    answer = (
        headers
        | state_headers(state)
        | {
            "Content-Type": shape.content_type,
            "Cache-Control": "no-store",
            "ETag": f'"{state.start}:-1:{state.tail}{":c" if state.closed else ""}"',
        }
    )
    if shape.ttl is not None:
        answer["Stream-TTL"] = str(shape.ttl)
    if shape.expires_at is not None:
        answer["Stream-Expires-At"] = offsets.format_expiry(shape.expires_at)
    return web.Response(status=200, headers=answer)
