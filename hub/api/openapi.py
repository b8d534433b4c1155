"""The hub's OpenAPI 3.1 description, served at ``/openapi.json``.

Written out by hand as data rather than derived from the handlers: the handlers parse by hand
(for speed, and to name the field in every error), so there is nothing to derive it from. What
keeps it true is tests/ops/test_openapi.py: every route of the app's router must be described here
(so it cannot go stale), and schemathesis fuzzes a live hub against it on every backplane and
fails on any 5xx or any answer, status or body this document does not list.

The event-stream GET routes are described (``text/event-stream``), but they never end, so the
fuzzer leaves them to their own test (tests/ops/test_openapi.py reads just their head).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from hub.api.openapi_schemas import CHANNEL, ERRORS, SCHEMAS, STRING

__all__ = ["OPENAPI", "STREAM_OPERATIONS", "add_openapi_route"]

#: operationIds of the routes that answer a never-ending event stream
STREAM_OPERATIONS = ("subscribeChannel", "subscribeChannels", "subscribeClock", "resumeAiChat")

_ERROR = {"$ref": "#/components/schemas/Error"}
_JSON_ERROR = {"application/json": {"schema": _ERROR}}
_RECEIPT = {"$ref": "#/components/schemas/Receipt"}


def _errors(*statuses: int) -> dict[str, Any]:
    return {
        str(status): {"description": ERRORS[status], "content": _JSON_ERROR} for status in statuses
    }


def _json(description: str, schema: dict[str, Any], status: int = 200) -> dict[str, Any]:
    return {
        str(status): {
            "description": description,
            "content": {"application/json": {"schema": schema}},
        }
    }


def _param(name: str, where: str, schema: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"name": name, "in": where, "schema": schema, **more}


_STRING = STRING
_CHANNEL = CHANNEL
_TICKET_CREATED = _json(
    "Issued: pass it as ?ticket= on one subscribe, within expires_in seconds",
    {
        "type": "object",
        "required": ["ticket", "expires_in"],
        "properties": {"ticket": _STRING, "expires_in": {"type": "integer"}},
    },
    201,
)
_CHANNEL_PARAM = _param(
    "name", "path", _CHANNEL, required=True, description="A channel name ('/' allowed)"
)
_RESUME = [
    _param("Last-Event-ID", "header", _STRING, description="Resume after this id"),
    _param("lastEventId", "query", _STRING, description="Last-Event-ID for polyfills"),
    _param("from", "query", {"enum": ["start"]}, description="Replay all retained history"),
]
_STREAM = {
    "200": {
        "description": "The event stream (also when the hub is at capacity or its backplane "
        "is away: then only a retry: hint and the end, so browsers come back later)",
        "content": {"text/event-stream": {"schema": _STRING}},
    },
    **_errors(400, 404),
}
_PUBLISH_ERRORS = _errors(400, 401, 403, 409, 410, 413, 415, 429, 503)
_AUTH_HEADERS = [
    _param("Idempotency-Key", "header", {"type": "string", "minLength": 1, "maxLength": 200}),
]
_PREFLIGHT = {
    "summary": "CORS preflight",
    "parameters": [_param("Access-Control-Request-Method", "header", _STRING)],
    "responses": {"204": {"description": "The CORS answer (empty unless the origin is allowed)"}},
}
_FILE = {
    "200": {
        "description": "A file of the page",
        "content": {
            kind: {"schema": _STRING}
            for kind in (
                "text/html",
                "text/javascript",
                "text/css",
                "image/svg+xml",
                "image/png",
                "image/x-icon",
                "application/json",
            )
        },
    },
    "304": {"description": "Not modified (If-None-Match)"},
    "404": {"description": "No such file, or no page", "content": _JSON_ERROR},
}


def _get_file(summary: str, *parameters: dict[str, Any]) -> dict[str, Any]:
    return {"get": {"summary": summary, "parameters": list(parameters), "responses": _FILE}}


_PATHS: dict[str, Any] = {
    "/channels/{name}/events": {
        "get": {
            "operationId": "subscribeChannel",
            "summary": "Subscribe to one channel",
            "parameters": [_CHANNEL_PARAM, *_RESUME],
            "responses": _STREAM,
        },
        "post": {
            "operationId": "publish",
            "summary": "Publish one event to a channel",
            "parameters": [_CHANNEL_PARAM, *_AUTH_HEADERS],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Event"}}},
            },
            "responses": {**_json("Stored and fanned out", _RECEIPT, 202), **_PUBLISH_ERRORS},
        },
        "options": {**_PREFLIGHT, "parameters": [_CHANNEL_PARAM, *_PREFLIGHT["parameters"]]},
    },
    "/events": {
        "get": {
            "operationId": "subscribeChannels",
            "summary": "Subscribe to several channels on one stream",
            "parameters": [
                _param(
                    "channel",
                    "query",
                    {"type": "array", "items": _CHANNEL},
                    required=True,
                    style="form",
                    explode=True,
                ),
                *_RESUME,
            ],
            "responses": _STREAM,
        },
        "options": _PREFLIGHT,
    },
    "/event-stream": {
        "get": {
            "operationId": "subscribeClock",
            "summary": "A clock channel by the original design's URL",
            "parameters": [
                _param("city", "query", _STRING, required=True, description="IANA timezone"),
                _param("sec", "query", _STRING, description="Interval, 1-3600 s"),
                *_RESUME,
            ],
            "responses": _STREAM,
        },
        "options": _PREFLIGHT,
    },
    "/publish": {
        "post": {
            "operationId": "publishBatch",
            "summary": "Publish a batch, all or nothing",
            "parameters": _AUTH_HEADERS,
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "array",
                            "minItems": 1,
                            "items": {"$ref": "#/components/schemas/BatchEvent"},
                        }
                    }
                },
            },
            "responses": {
                **_json(
                    "Stored and fanned out",
                    {
                        "type": "object",
                        "required": ["events"],
                        "properties": {"events": {"type": "array", "items": _RECEIPT}},
                    },
                    202,
                ),
                **_PUBLISH_ERRORS,
            },
        },
        "options": _PREFLIGHT,
    },
    "/publish/stream": {
        "post": {
            "operationId": "publishStream",
            "summary": "Publish a stream of events, one per line; one answer line per event",
            "description": "Each line is a BatchEvent; blank lines are ignored. The answer "
            "streams a Receipt or a StreamError per non-blank line, in order; a bad line is "
            "reported and the stream goes on. No Idempotency-Key (400).",
            "requestBody": {
                "required": True,
                "content": {
                    "application/x-ndjson": {
                        "schema": {
                            "type": "array",
                            "description": "The lines' objects: one JSON object a line",
                            "items": {"$ref": "#/components/schemas/BatchEvent"},
                        }
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "One JSON object per line: a Receipt or a StreamError",
                    "content": {"application/x-ndjson": {"schema": _STRING}},
                },
                **_errors(400, 401, 403, 415, 503),
            },
        },
        "options": _PREFLIGHT,
    },
    "/tickets": {
        "post": {
            "operationId": "issueTicket",
            "summary": "A one-time subscribe ticket for private channels (publish auth)",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["channels"],
                            "additionalProperties": False,
                            "properties": {
                                "channels": {"type": "array", "minItems": 1, "items": _CHANNEL},
                                "ttl": {"type": "integer", "minimum": 1, "maximum": 300},
                            },
                        }
                    }
                },
            },
            "responses": {**_TICKET_CREATED, **_errors(400, 401, 403, 413, 415, 429, 501, 503)},
        },
        "options": _PREFLIGHT,
    },
    "/channels/{name}": {
        "delete": {
            "operationId": "deleteChannel",
            "summary": "Delete a channel: close its streams, end its history (publish auth)",
            "parameters": [_CHANNEL_PARAM],
            "responses": {
                **_json(
                    "Deleted",
                    {
                        "type": "object",
                        "required": ["channel", "closed"],
                        "properties": {"channel": _CHANNEL, "closed": {"type": "integer"}},
                    },
                ),
                **_errors(400, 401, 403, 404, 410, 501, 503),
            },
        }
    },
    "/channels/{name}/close": {
        "post": {
            "operationId": "closeChannel",
            "summary": "Close a finished channel: its streams end after its last event with "
            "event: close, its history stays readable, publishes answer 409 (publish auth)",
            "parameters": [_CHANNEL_PARAM],
            "requestBody": {
                "required": False,
                "content": {"application/json": {"schema": {"type": "object", "maxProperties": 0}}},
            },
            "responses": {
                **_json(
                    "Closed (now, or already: closing is idempotent)",
                    {
                        "type": "object",
                        "required": ["channel", "already_closed", "subscribers"],
                        "properties": {
                            "channel": _CHANNEL,
                            "already_closed": {"type": "boolean"},
                            "subscribers": {"type": "integer"},
                        },
                    },
                ),
                **_errors(400, 401, 403, 410, 413, 415, 501, 503),
            },
        },
        "options": {**_PREFLIGHT, "parameters": [_CHANNEL_PARAM, *_PREFLIGHT["parameters"]]},
    },
    "/ai/{name}/stream": {
        "get": {
            "operationId": "resumeAiChat",
            "summary": "The AI SDK's resumable chat stream (DefaultChatTransport api: <hub>/ai/"
            "chat): the channel's whole history as UI message chunks, then live, then data: "
            "[DONE] when it is closed",
            "parameters": [_CHANNEL_PARAM],
            "responses": {
                "200": {
                    "description": "A UI message stream (x-vercel-ai-ui-message-stream: v1)",
                    "content": {"text/event-stream": {"schema": _STRING}},
                },
                "204": {"description": "Nothing to resume: no history, or deleted"},
                **_errors(400, 401, 403, 429, 503),
            },
        },
        "options": {**_PREFLIGHT, "parameters": [_CHANNEL_PARAM, *_PREFLIGHT["parameters"]]},
    },
    "/channels": {
        "get": {
            "summary": "Channels with subscribers, history or a clock",
            "responses": {
                **_json(
                    "The channels",
                    {"type": "array", "items": {"$ref": "#/components/schemas/Channel"}},
                ),
                **_errors(503),
            },
        }
    },
    "/healthz": {
        "get": {
            "summary": "Liveness and state",
            "responses": _json(
                "The state",
                {
                    "type": "object",
                    "required": ["status", "backplane", "subscribers", "channels", "uptime"],
                    "properties": {
                        "status": {"const": "ok"},
                        "backplane": {"type": "object"},
                        "subscribers": {"type": "integer"},
                        "channels": {"type": "integer"},
                        "uptime": {"type": "number"},
                    },
                },
            ),
        }
    },
    "/readyz": {
        "get": {
            "summary": "Readiness: 503 while the backplane is away",
            "responses": {
                **_json(
                    "Ready",
                    {
                        "type": "object",
                        "properties": {"ready": {"const": True}},
                        "required": ["ready"],
                    },
                ),
                **_errors(503),
            },
        }
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus text format",
            "responses": {
                "200": {
                    "description": "The metrics",
                    "content": {"text/plain": {"schema": _STRING}},
                }
            },
        }
    },
    "/timezones": {
        "get": {
            "summary": "The IANA timezones the hub knows",
            "responses": _json("The names", {"type": "array", "items": _STRING}),
        }
    },
    "/openapi.json": {
        "get": {"summary": "This document", "responses": _json("OpenAPI 3.1", {"type": "object"})}
    },
    "/demo/jobs": {
        "post": {
            "summary": "Start a demo job (only with demo_jobs on)",
            "responses": {
                **_json(
                    "Started",
                    {
                        "type": "object",
                        "required": ["id", "channel", "page", "events"],
                        "properties": {k: _STRING for k in ("id", "channel", "page", "events")},
                    },
                    202,
                ),
                **_errors(400, 415, 503),
            },
        }
    },
    "/demo/answers": {
        "post": {
            "summary": "Start a demo streamed answer (only with demo_jobs on)",
            "responses": {
                **_json(
                    "Started",
                    {
                        "type": "object",
                        "required": ["id", "channel", "tokens", "private", "events", "tickets"],
                        "properties": {
                            "id": _STRING,
                            "channel": _STRING,
                            "tokens": {"type": "integer"},
                            "private": {"type": "boolean"},
                            "events": _STRING,
                            "tickets": _STRING,
                        },
                    },
                    202,
                ),
                **_errors(503),
            },
        }
    },
    "/demo/answers/{id}/tickets": {
        "post": {
            "summary": "A one-time ticket for a demo answer's channel (only with demo_jobs on)",
            "parameters": [_param("id", "path", _STRING, required=True)],
            "responses": {**_TICKET_CREATED, **_errors(404, 429, 501, 503)},
        }
    },
    "/": _get_file("The page"),
    "/jobs/{id}": _get_file("A job's page", _param("id", "path", _STRING, required=True)),
    "/assets/{path}": _get_file(
        "A file of the page", _param("path", "path", _STRING, required=True)
    ),
    "/favicon.ico": _get_file("The icon"),
}

#: The document, as a dict (tests read it; the route serves its bytes).
OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "ssehub",
        "version": "0.1.0",
        "description": "A Server-Sent Events broadcast hub. Every error is JSON "
        '{"error": "..."}; an event stream answers 200 even when it turns a client away.',
    },
    "paths": _PATHS,
    "components": {"schemas": SCHEMAS},
}


def add_openapi_route(app: web.Application) -> None:
    body = orjson.dumps(
        OPENAPI, None, orjson.OPT_APPEND_NEWLINE
    )  # encoded once: it never changes while the hub runs

    async def openapi(request: web.Request) -> web.Response:
        return web.Response(body=body, headers={"Content-Type": "application/json"})

    app.router.add_get("/openapi.json", openapi)
