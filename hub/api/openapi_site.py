"""The OpenAPI paths of everything beside the channel API: the channel list, health, readiness,
metrics, the timezone list, this document, the demo and the page's files.

Apart from the API's paths (``hub.api.openapi_paths``): these serve operators and the page, and
change with them.
"""

from __future__ import annotations

from typing import Any

from hub.api.openapi_parts import (
    STRING,
    TICKET_CREATED,
    errors,
    get_file,
    json_answer,
    param,
)

__all__ = ["SITE_PATHS"]

SITE_PATHS: dict[str, Any] = {
    "/channels": {
        "get": {
            "summary": "Channels with subscribers, history or a clock",
            "responses": {
                **json_answer(
                    "The channels",
                    {"type": "array", "items": {"$ref": "#/components/schemas/Channel"}},
                ),
                **errors(503),
            },
        }
    },
    "/healthz": {
        "get": {
            "summary": "Liveness and state",
            "responses": json_answer(
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
                **json_answer(
                    "Ready",
                    {
                        "type": "object",
                        "properties": {"ready": {"const": True}},
                        "required": ["ready"],
                    },
                ),
                **errors(503),
            },
        }
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus text format",
            "responses": {
                "200": {
                    "description": "The metrics",
                    "content": {"text/plain": {"schema": STRING}},
                }
            },
        }
    },
    "/timezones": {
        "get": {
            "summary": "The IANA timezones the hub knows",
            "responses": json_answer("The names", {"type": "array", "items": STRING}),
        }
    },
    "/openapi.json": {
        "get": {
            "summary": "This document",
            "responses": json_answer("OpenAPI 3.1", {"type": "object"}),
        }
    },
    "/demo/jobs": {
        "post": {
            "summary": "Start a demo job (only with demo_jobs on)",
            "responses": {
                **json_answer(
                    "Started",
                    {
                        "type": "object",
                        "required": ["id", "channel", "page", "events"],
                        "properties": {k: STRING for k in ("id", "channel", "page", "events")},
                    },
                    202,
                ),
                **errors(400, 415, 503),
            },
        }
    },
    "/demo/answers": {
        "post": {
            "summary": "Start a demo streamed answer (only with demo_jobs on)",
            "responses": {
                **json_answer(
                    "Started",
                    {
                        "type": "object",
                        "required": ["id", "channel", "tokens", "private", "events", "tickets"],
                        "properties": {
                            "id": STRING,
                            "channel": STRING,
                            "tokens": {"type": "integer"},
                            "private": {"type": "boolean"},
                            "events": STRING,
                            "tickets": STRING,
                        },
                    },
                    202,
                ),
                **errors(503),
            },
        }
    },
    "/demo/answers/{id}/tickets": {
        "post": {
            "summary": "A one-time ticket for a demo answer's channel (only with demo_jobs on)",
            "parameters": [param("id", "path", STRING, required=True)],
            "responses": {**TICKET_CREATED, **errors(404, 429, 501, 503)},
        }
    },
    "/": get_file("The page"),
    "/jobs/{id}": get_file("A job's page", param("id", "path", STRING, required=True)),
    "/assets/{path}": get_file("A file of the page", param("path", "path", STRING, required=True)),
    "/favicon.ico": get_file("The icon"),
}
