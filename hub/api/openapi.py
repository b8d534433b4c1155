"""The hub's OpenAPI 3.1 description, served at ``/openapi.json``.

Written out by hand as data rather than derived from the handlers: the handlers parse by hand
(for speed, and to name the field in every error), so there is nothing to derive it from. What
keeps it true is tests/ops/test_openapi.py: every route of the app's router must be described in
the path tables (``hub.api.openapi_paths`` for the channel API, ``hub.api.openapi_site`` for the
rest; their shared fragments in ``hub.api.openapi_parts``), so it cannot go stale; and
schemathesis fuzzes a live hub against it on every backplane and fails on any 5xx or any answer,
status or body this document does not list.

The event-stream GET routes are described (``text/event-stream``), but they never end, so the
fuzzer leaves them to their own test (tests/ops/test_openapi.py reads just their head).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from hub.api.openapi_durable import DURABLE_PATHS
from hub.api.openapi_paths import API_PATHS
from hub.api.openapi_schemas import SCHEMAS
from hub.api.openapi_site import SITE_PATHS

__all__ = ["OPENAPI", "STREAM_OPERATIONS", "add_openapi_route"]

#: operationIds of the routes that answer a never-ending event stream
STREAM_OPERATIONS = (
    "subscribeChannel",
    "subscribeChannels",
    "subscribeClock",
    "resumeAiChat",
    "readDurableStream",  # (with live=sse)
)

#: The document, as a dict (tests read it; the route serves its bytes).
OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "ssehub",
        "version": "0.1.0",
        "description": "A Server-Sent Events broadcast hub. Every error is JSON "
        '{"error": "..."}; an event stream answers 200 even when it turns a client away.',
    },
    "paths": {**API_PATHS, **DURABLE_PATHS, **SITE_PATHS},
    "components": {"schemas": SCHEMAS},
}


def add_openapi_route(app: web.Application) -> None:
    """Serve the document at ``/openapi.json``."""
    body = orjson.dumps(
        OPENAPI, None, orjson.OPT_APPEND_NEWLINE
    )  # encoded once: it never changes while the hub runs

    async def openapi(request: web.Request) -> web.Response:
        return web.Response(body=body, headers={"Content-Type": "application/json"})

    app.router.add_get("/openapi.json", openapi)
