"""A JSON request body, read and parsed within the hub's limits (``max_body_bytes``,
``body_timeout``): the publish routes' and the other short JSON routes' one way in.

``json_now`` takes a body that has arrived whole without a timer, a copy or a coroutine (the
publish path's common case); ``read_json`` waits for one still arriving. The errors name the
limit that refused, so an operator knows which setting to raise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from hub.config import Config
from hub.events import InvalidInput

__all__ = ["LATER", "body_too_large", "json_now", "parse", "read_body", "read_json"]

#: ``json_now``'s answer when the body is still arriving (``None`` is a JSON body: null).
LATER = object()


def json_now(request: web.Request, config: Config) -> Any:
    """The parsed body when all of it is there (a small body: taken as it is, no timer, no
    copies, no coroutine), else ``LATER``: then ``read_json`` waits for it."""
    given = request.headers.get("Content-Type", "")
    if given != "application/json" and given.partition(";")[0].strip().lower() != (
        "application/json"
    ):
        raise InvalidInput(
            f"Content-Type must be application/json, not {request.content_type!r}", status=415
        )
    content = request.content
    if not content.is_eof():
        return LATER
    body = content.read_nowait()
    if len(body) > config.max_body_bytes:  # its Content-Length, or a chunked one's
        raise body_too_large(config)
    return parse(body)


async def read_json(request: web.Request, config: Config) -> Any:
    parsed = json_now(request, config)
    if parsed is not LATER:
        return parsed
    return parse(await read_body(request, config))


async def read_body(
    request: web.Request,
    config: Config,
    too_large: Callable[[Config], InvalidInput] | None = None,
) -> bytes:
    """The body within ``max_body_bytes`` (413: ``too_large``'s words, the publish routes' by
    default) and ``body_timeout`` (408), however slowly it arrives."""
    refuse = body_too_large if too_large is None else too_large
    length = request.content_length
    if length is not None and length > config.max_body_bytes:
        raise refuse(config)
    try:
        async with asyncio.timeout(config.body_timeout):
            return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise refuse(config) from None
    except TimeoutError:
        raise InvalidInput(
            f"the body did not arrive within body_timeout ({config.body_timeout:g} s)", 408
        ) from None


def parse(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as problem:
        raise InvalidInput(f"the body is not valid JSON: {problem}") from None


def body_too_large(config: Config) -> InvalidInput:
    """Names both limits: raising max_body_bytes alone would only move the refusal to
    max_event_bytes, and a newcomer would meet the second one after a restart."""
    return InvalidInput(
        f"the body is larger than max_body_bytes ({config.max_body_bytes} bytes); one event's "
        f"data is also limited by max_event_bytes ({config.max_event_bytes}): raise both to "
        "publish bigger events, or split the data",
        status=413,
    )
