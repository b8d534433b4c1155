"""The OpenAPI paths of the channel API: subscribe (one channel, several, a clock), publish (one
event, a batch, a stream of lines), tickets, and deleting a channel.

The part of the document that clients and publishers code against, kept apart from the operations
and page routes (``hub.api.openapi_site``) so that a change to the API reads as one diff here.
"""

from __future__ import annotations

from typing import Any

from hub.api.openapi_parts import (
    AUTH_HEADERS,
    CHANNEL,
    CHANNEL_PARAM,
    FILTERS,
    PREFLIGHT,
    PUBLISH_ERRORS,
    RECEIPT,
    RESUME,
    STREAM,
    STRING,
    TICKET_CREATED,
    errors,
    json_answer,
    param,
)

__all__ = ["API_PATHS"]

API_PATHS: dict[str, Any] = {
    "/channels/{name}/events": {
        "get": {
            "operationId": "subscribeChannel",
            "summary": "Subscribe to one channel",
            "parameters": [CHANNEL_PARAM, *RESUME, *FILTERS],
            "responses": STREAM,
        },
        "post": {
            "operationId": "publish",
            "summary": "Publish one event to a channel",
            "parameters": [CHANNEL_PARAM, *AUTH_HEADERS],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Event"}}},
            },
            "responses": {**json_answer("Stored and fanned out", RECEIPT, 202), **PUBLISH_ERRORS},
        },
        "options": {**PREFLIGHT, "parameters": [CHANNEL_PARAM, *PREFLIGHT["parameters"]]},
    },
    "/events": {
        "get": {
            "operationId": "subscribeChannels",
            "summary": "Subscribe to several channels on one stream",
            "parameters": [
                param(
                    "channel",
                    "query",
                    {"type": "array", "items": CHANNEL},
                    required=True,
                    style="form",
                    explode=True,
                ),
                *RESUME,
                *FILTERS,
            ],
            "responses": STREAM,
        },
        "options": PREFLIGHT,
    },
    "/event-stream": {
        "get": {
            "operationId": "subscribeClock",
            "summary": "A clock channel by the original design's URL",
            "description": "The clock time/<city>/<sec>: event: UPDATE ticks {id, dateTime, iso, "
            "timezone, channel, interval, offset, abbreviation}, the first at once; at a DST "
            "transition, event: offset {timezone, offset, abbreviation, at, channel} before the "
            "first tick in the new offset (docs/concepts/clocks.md)",
            "parameters": [
                param("city", "query", STRING, required=True, description="IANA timezone"),
                param("sec", "query", STRING, description="Interval, 1-3600 s"),
                *RESUME,
                *FILTERS,
            ],
            "responses": STREAM,
        },
        "options": PREFLIGHT,
    },
    "/publish": {
        "post": {
            "operationId": "publishBatch",
            "summary": "Publish a batch, all or nothing",
            "parameters": AUTH_HEADERS,
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
                **json_answer(
                    "Stored and fanned out",
                    {
                        "type": "object",
                        "required": ["events"],
                        "properties": {"events": {"type": "array", "items": RECEIPT}},
                    },
                    202,
                ),
                **PUBLISH_ERRORS,
            },
        },
        "options": PREFLIGHT,
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
                    "content": {"application/x-ndjson": {"schema": STRING}},
                },
                **errors(400, 401, 403, 415, 503),
            },
        },
        "options": PREFLIGHT,
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
                                "channels": {"type": "array", "minItems": 1, "items": CHANNEL},
                                "ttl": {"type": "integer", "minimum": 1, "maximum": 300},
                            },
                        }
                    }
                },
            },
            "responses": {**TICKET_CREATED, **errors(400, 401, 403, 413, 415, 429, 501, 503)},
        },
        "options": PREFLIGHT,
    },
    "/channels/{name}": {
        "delete": {
            "operationId": "deleteChannel",
            "summary": "Delete a channel: close its streams, end its history (publish auth)",
            "parameters": [CHANNEL_PARAM],
            "responses": {
                **json_answer(
                    "Deleted",
                    {
                        "type": "object",
                        "required": ["channel", "closed"],
                        "properties": {"channel": CHANNEL, "closed": {"type": "integer"}},
                    },
                ),
                **errors(400, 401, 403, 404, 410, 501, 503),
            },
        }
    },
    "/channels/{name}/close": {
        "post": {
            "operationId": "closeChannel",
            "summary": "Close a finished channel: its streams end after its last event with "
            "event: close, its history stays readable, publishes answer 409 (publish auth)",
            "parameters": [CHANNEL_PARAM],
            "requestBody": {
                "required": False,
                "content": {"application/json": {"schema": {"type": "object", "maxProperties": 0}}},
            },
            "responses": {
                **json_answer(
                    "Closed (now, or already: closing is idempotent)",
                    {
                        "type": "object",
                        "required": ["channel", "already_closed", "subscribers"],
                        "properties": {
                            "channel": CHANNEL,
                            "already_closed": {"type": "boolean"},
                            "subscribers": {"type": "integer"},
                        },
                    },
                ),
                **errors(400, 401, 403, 410, 413, 415, 501, 503),
            },
        },
        "options": {**PREFLIGHT, "parameters": [CHANNEL_PARAM, *PREFLIGHT["parameters"]]},
    },
    "/ai/{name}/stream": {
        "get": {
            "operationId": "resumeAiChat",
            "summary": "The AI SDK's resumable chat stream (DefaultChatTransport api: <hub>/ai/"
            "chat): the channel's whole history as UI message chunks, then live, then data: "
            "[DONE] when it is closed",
            "parameters": [CHANNEL_PARAM],
            "responses": {
                "200": {
                    "description": "A UI message stream (x-vercel-ai-ui-message-stream: v1)",
                    "content": {"text/event-stream": {"schema": STRING}},
                },
                "204": {"description": "Nothing to resume: no history, or deleted"},
                **errors(400, 401, 403, 429, 503),
            },
        },
        "options": {**PREFLIGHT, "parameters": [CHANNEL_PARAM, *PREFLIGHT["parameters"]]},
    },
}
