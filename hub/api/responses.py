"""JSON answers, JSON errors and CORS: every short answer of the hub is built here.

Every error is JSON ``{"error": "..."}`` with a fitting status, except where an ``EventSource``
is listening: a browser gives up for good on any answer but ``200 text/event-stream`` (see
``subscribe``). ``InvalidInput`` (from ``hub.events``) carries its status; ``answer`` and
``json_errors`` are the one way it becomes a response.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from hub.config import Config
from hub.events import InvalidInput

__all__ = [
    "JSON_HEADERS",
    "Handler",
    "add_fallback",
    "allowed_origin",
    "answer",
    "cors_headers",
    "error",
    "json_errors",
    "json_response",
    "preflight_handler",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Every JSON answer's headers (shared, never changed: a dict a response is made of)
JSON_HEADERS = {"Content-Type": "application/json"}


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    # The header given as such: aiohttp's content_type= parses and rebuilds it every time.
    # The newline: a terminal running curl would put its prompt right after the JSON.
    return web.Response(
        status=status,
        body=orjson.dumps(data, None, orjson.OPT_APPEND_NEWLINE),
        headers={**JSON_HEADERS, **headers} if headers else JSON_HEADERS,
    )


def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return json_response({"error": message}, status, headers)


def answer(problem: InvalidInput, headers: dict[str, str] | None = None) -> web.Response:
    """The response to bad input: its status and message, as JSON."""
    response = error(problem.status, str(problem), headers)
    if problem.status == 408:  # a body still trickling in: do not wait for the rest of it
        response.force_close()
    return response


def json_errors(config: Config, handler: Handler) -> Handler:
    """Answer ``InvalidInput`` raised by a short request's handler as a JSON error.

    A wrapper rather than a middleware: a middleware's frame would stay alive for the whole
    life of every event stream, which is memory paid per subscriber.
    """

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except InvalidInput as problem:
            return answer(problem, cors_headers(config, request))

    return wrapper


# -- CORS ------------------------------------------------------------------------------------


_READS = frozenset({"GET", "HEAD"})


def allowed_origin(request: web.Request, origins: tuple[str, ...]) -> dict[str, str]:
    """The CORS answer for the request's ``Origin`` against ``origins`` (empty: not allowed).

    A listed origin is echoed exactly with ``Access-Control-Allow-Credentials``, whether or not
    ``*`` is listed beside it: a browser sends a grant's cookie cross-origin only with
    credentials, and rejects a credentialed answer that says ``*``. ``*`` answers every other
    origin without credentials: an origin that is not listed never reads with the user's
    cookie (any site could otherwise read a user's private streams)."""
    origin = request.headers.get("Origin")
    if origin is not None and origin in origins:
        return {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Credentials": "true",
            "Vary": "Origin",
        }
    if "*" in origins:
        if len(origins) > 1:  # the answer depends on the origin: caches must know
            return {"Access-Control-Allow-Origin": "*", "Vary": "Origin"}
        return {"Access-Control-Allow-Origin": "*"}
    return {}


def cors_headers(config: Config, request: web.Request) -> dict[str, str]:
    """Subscribing (GET, and HEAD: a read too) and publishing have separate origin lists."""
    origins = config.cors_origins if request.method in _READS else config.publish_cors_origins
    return allowed_origin(request, origins)


def preflight_handler(config: Config) -> Handler:
    """Answer CORS preflights; subscribe and publish have separate origin lists."""

    async def preflight(request: web.Request) -> web.Response:
        method = request.headers.get("Access-Control-Request-Method", "GET").upper()
        if method == "POST":
            headers = allowed_origin(request, config.publish_cors_origins)
            allow = "Authorization, Content-Type, Idempotency-Key"
        else:
            headers = allowed_origin(request, config.cors_origins)
            # fetch-based EventSource polyfills send Last-Event-ID as a real header, and a grant
            # for private channels as Authorization (so does the AI SDK's transport)
            allow = "Last-Event-ID, Cache-Control, Accept, Authorization"
        if headers:
            headers |= {
                "Access-Control-Allow-Methods": method if method in ("GET", "POST") else "GET",
                "Access-Control-Allow-Headers": allow,
                "Access-Control-Max-Age": "86400",
            }
        return web.Response(status=204, headers=headers)

    return preflight


# -- what no route takes ---------------------------------------------------------------------


async def _fallback(request: web.Request) -> web.Response:
    """JSON 404 and 405 for requests no route takes (the last route: it matches everything)."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is not request.match_info.route.resource:
            allowed |= (await resource.resolve(request))[1]
    if allowed:
        return error(
            405,
            f"method {request.method} is not allowed here; allowed: {', '.join(sorted(allowed))}",
            {"Allow": ", ".join(sorted(allowed))},
        )
    return error(404, f"nothing at {request.path}; the routes are listed at /openapi.json")


def add_fallback(app: web.Application) -> None:
    """Register last (after every other route, the page's included): JSON 404/405."""
    app.router.add_route("*", r"/{tail:[\s\S]*}", _fallback)  # newlines too
