"""The building blocks of the OpenAPI description's paths: answers, parameters and the fragments
several routes share (the resume parameters, the event-stream answer, the CORS preflight).

Apart from the path tables (``hub.api.openapi_paths``, ``hub.api.openapi_site``) so that both
tables describe a shared thing the same way, and a route added to either reuses the same words.
"""

from __future__ import annotations

from typing import Any

from hub.api.openapi_schemas import CHANNEL, ERRORS, STRING, TAG_FILTER
from hub.events import EVENT_NAME_RE

__all__ = [
    "AUTH_HEADERS",
    "CHANNEL",
    "CHANNEL_PARAM",
    "ERROR",
    "FILE",
    "FILTERS",
    "JSON_ERROR",
    "PREFLIGHT",
    "PUBLISH_ERRORS",
    "RECEIPT",
    "RESUME",
    "STREAM",
    "STRING",
    "TICKET_CREATED",
    "errors",
    "get_file",
    "json_answer",
    "param",
]

ERROR = {"$ref": "#/components/schemas/Error"}
JSON_ERROR = {"application/json": {"schema": ERROR}}
RECEIPT = {"$ref": "#/components/schemas/Receipt"}


def errors(*statuses: int) -> dict[str, Any]:
    """The JSON error answers for these statuses, each with its meaning from ``ERRORS``."""
    return {
        str(status): {"description": ERRORS[status], "content": JSON_ERROR} for status in statuses
    }


def json_answer(description: str, schema: dict[str, Any], status: int = 200) -> dict[str, Any]:
    """One answer with a JSON body of this schema."""
    return {
        str(status): {
            "description": description,
            "content": {"application/json": {"schema": schema}},
        }
    }


def param(name: str, where: str, schema: dict[str, Any], **more: Any) -> dict[str, Any]:
    """A parameter (``where``: path, query or header)."""
    return {"name": name, "in": where, "schema": schema, **more}


TICKET_CREATED = json_answer(
    "Issued: pass it as ?ticket= on one subscribe, within expires_in seconds",
    {
        "type": "object",
        "required": ["ticket", "expires_in"],
        "properties": {"ticket": STRING, "expires_in": {"type": "integer"}},
    },
    201,
)
CHANNEL_PARAM = param(
    "name", "path", CHANNEL, required=True, description="A channel name ('/' allowed)"
)
RESUME = [
    param("Last-Event-ID", "header", STRING, description="Resume after this id"),
    param("lastEventId", "query", STRING, description="Last-Event-ID for polyfills"),
    param("from", "query", {"enum": ["start"]}, description="Replay all retained history"),
]
#: the native subscribe routes' filters and replay by time (docs/concepts/filters.md)
FILTERS = [
    param(
        "event",
        "query",
        {"type": "array", "items": {"type": "string", "pattern": f"^{EVENT_NAME_RE.pattern}$"}},
        style="form",
        explode=True,
        description="Only events of these types (any of); reset and close always pass",
    ),
    param(
        "tag",
        "query",
        {"type": "array", "items": {"type": "string", "pattern": TAG_FILTER}},
        style="form",
        explode=True,
        description="name:value or name:value|value; every tag= must match",
    ),
    param(
        "since",
        "query",
        STRING,
        description="RFC 3339 time or Unix seconds: the history published at or after it, "
        "then live (Last-Event-ID wins; not with from=start or replay=)",
    ),
]
STREAM = {
    "200": {
        "description": "The event stream (also when the hub is at capacity or its backplane "
        "is away: then only a retry: hint and the end, so browsers come back later)",
        "content": {"text/event-stream": {"schema": STRING}},
    },
    **errors(400, 404),
}
PUBLISH_ERRORS = errors(400, 401, 403, 409, 410, 413, 415, 429, 503)
AUTH_HEADERS = [
    param("Idempotency-Key", "header", {"type": "string", "minLength": 1, "maxLength": 200}),
]
PREFLIGHT = {
    "summary": "CORS preflight",
    "parameters": [param("Access-Control-Request-Method", "header", STRING)],
    "responses": {"204": {"description": "The CORS answer (empty unless the origin is allowed)"}},
}
FILE = {
    "200": {
        "description": "A file of the page",
        "content": {
            kind: {"schema": STRING}
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
    "404": {"description": "No such file, or no page", "content": JSON_ERROR},
}


def get_file(summary: str, *parameters: dict[str, Any]) -> dict[str, Any]:
    """A GET route serving a file of the page."""
    return {"get": {"summary": summary, "parameters": list(parameters), "responses": FILE}}
