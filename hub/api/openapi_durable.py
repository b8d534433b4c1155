"""The OpenAPI path of Durable Streams (``hub.dialects.durable``): ``/v1/stream/{path}``.

Its own table (beside ``hub.api.openapi_paths``) because the protocol is someone else's: the
headers and statuses are the protocol's (sections 5.1-5.8), listed here so that the fuzzer
holds the hub to them; its errors are JSON ``{"error"}`` as every other error of the hub.
"""

from __future__ import annotations

from typing import Any

from hub.api.openapi_parts import JSON_ERROR, PREFLIGHT, STRING, param
from hub.api.openapi_schemas import CHANNEL

__all__ = ["DURABLE_PATHS"]

PATH = param("path", "path", CHANNEL, required=True, description="The stream: its channel")
_WHY = {
    400: "Bad input (a header, an offset, JSON that is not, a producer's epoch not at 0)",
    401: "No token, or a private stream without a grant",
    403: "Wrong token or grant, out of its scope, or a stale producer epoch (Producer-Epoch)",
    404: "No such stream",
    408: "The body did not arrive within body_timeout",
    409: "Exists otherwise, closed (Stream-Closed), another content type, a Stream-Seq not "
    "above the last, or a producer's sequence gap (Producer-Expected-Seq)",
    410: "The offset's events are no longer kept",
    413: "Too large: max_body_bytes, max_event_bytes (a JSON message) or max_batch",
    429: "Too fast or too many (publish_rate; subscribe_rate, max_client_streams): Retry-After",
    501: "Not served: forks, or a backplane without Durable Streams",
    503: "The backplane could not store or answer, or the hub is at capacity: Retry-After",
}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): {"description": _WHY[s], "content": JSON_ERROR} for s in statuses}


_CONTROL = [
    param("Content-Type", "header", STRING),
    param("Stream-Closed", "header", STRING, description="true: close (after this body)"),
]
_PRODUCER = [
    param("Producer-Id", "header", STRING),
    param("Producer-Epoch", "header", STRING),
    param("Producer-Seq", "header", STRING),
    param("Stream-Seq", "header", STRING),
]
_BODY = {"content": {"*/*": {"schema": STRING}}}
_DONE = {"description": "Done (headers: Stream-Next-Offset, Stream-Closed, Producer-*)"}

DURABLE_PATHS: dict[str, Any] = {
    "/v1/stream/{path}": {
        "put": {
            "operationId": "createDurableStream",
            "summary": "Durable Streams: create a stream (idempotent: 200 for the same config)",
            "parameters": [
                PATH,
                *_CONTROL,
                param("Stream-TTL", "header", STRING),
                param("Stream-Expires-At", "header", STRING),
            ],
            "requestBody": _BODY,
            "responses": {
                "201": {"description": "Created (Location, Stream-Next-Offset)"},
                "200": {"description": "It exists with the same configuration"},
                **_errors(400, 401, 403, 408, 409, 413, 429, 501, 503),
            },
        },
        "post": {
            "operationId": "appendDurableStream",
            "summary": "Durable Streams: append (a JSON array: one message per item), close",
            "parameters": [PATH, *_CONTROL, *_PRODUCER],
            "requestBody": _BODY,
            "responses": {
                "200": _DONE,
                "204": _DONE,
                **_errors(400, 401, 403, 404, 408, 409, 413, 429, 501, 503),
            },
        },
        "get": {
            "operationId": "readDurableStream",
            "summary": "Durable Streams: read from an offset (catch-up, live=long-poll, live=sse)",
            "parameters": [
                PATH,
                param("offset", "query", STRING, description="-1, now, or a Stream-Next-Offset"),
                param("live", "query", {"enum": ["long-poll", "sse"]}),
                param("cursor", "query", STRING),
                param("If-None-Match", "header", STRING),
            ],
            "responses": {
                "200": {
                    "description": "The stream's bytes after the offset (a JSON array for "
                    "application/json), or an event stream (live=sse)",
                    "content": {"*/*": {"schema": STRING}},
                },
                "204": {"description": "Long-poll: nothing came (Stream-Next-Offset)"},
                "304": {"description": "Not modified (If-None-Match)"},
                **_errors(400, 401, 403, 404, 410, 429, 501, 503),
            },
        },
        "delete": {
            "operationId": "deleteDurableStream",
            "summary": "Durable Streams: delete a stream and its events",
            "parameters": [PATH],
            "responses": {
                "204": {"description": "Deleted"},
                **_errors(400, 401, 403, 404, 429, 501, 503),
            },
        },
        "options": {**PREFLIGHT, "parameters": [PATH, *PREFLIGHT["parameters"]]},
    },
}
