"""The named schemas of the OpenAPI description (``hub.api.openapi``): the error, the events a
publisher sends, the receipts and the channel list. Patterns come from ``hub.events``, so the
document checks names exactly as the hub does."""

from __future__ import annotations

from typing import Any

from hub.events import CHANNEL_RE, EVENT_NAME_RE, MAX_TAGS, TAG_NAME_RE

__all__ = ["CHANNEL", "ERRORS", "SCHEMAS", "STRING", "TAG_FILTER"]

STRING = {"type": "string"}
CHANNEL = {"type": "string", "pattern": f"^{CHANNEL_RE.pattern}$"}
_VALUE = EVENT_NAME_RE.pattern
#: a ``tag=`` filter: name:value, or name:value|value...
TAG_FILTER = f"^{TAG_NAME_RE.pattern}:{_VALUE}(\\|{_VALUE})*$"
TAGS = {
    "type": "object",
    "maxProperties": MAX_TAGS,
    "propertyNames": {"pattern": f"^{TAG_NAME_RE.pattern}$"},
    "additionalProperties": {"type": "string", "pattern": f"^{_VALUE}$"},
    "description": "Kept with the event for ?tag= filters; never on the wire",
}
#: what each error status means, wherever it is answered
ERRORS = {
    400: "Bad input: the message names the field or setting",
    401: "No token (publish_tokens is set)",
    403: "Wrong token, or a non-loopback client with no publish_tokens",
    404: "Not there (a clock not declared, with clocks_on_demand off)",
    409: "The channel is closed: finished, its history readable (for history_ttl seconds)",
    410: "The channel is deleted (for history_ttl seconds)",
    413: "Too large: max_event_bytes, max_batch or max_body_bytes",
    415: "Content-Type is not application/json (application/x-ndjson for /publish/stream)",
    429: "Too fast or too many (publish_rate; ticket_rate, max_publisher_tickets; the AI SDK "
    "stream: subscribe_rate, max_client_streams, max_client_channels): see Retry-After",
    501: "This backplane cannot do it (no tickets, no deletion)",
    503: "The backplane could not store or answer; retry (publish: same Idempotency-Key)",
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string", "description": "What went wrong"}},
    },
    "Event": {
        "type": "object",
        "required": ["data"],
        "additionalProperties": False,
        "properties": {
            "event": {"type": "string", "pattern": f"^{EVENT_NAME_RE.pattern}$"},
            "data": {"description": "Any JSON; a string is sent as text"},
            "tags": TAGS,
        },
    },
    "BatchEvent": {
        "type": "object",
        "required": ["channel", "data"],
        "additionalProperties": False,
        "properties": {
            "channel": CHANNEL,
            "event": {"type": "string", "pattern": f"^{EVENT_NAME_RE.pattern}$"},
            "data": {"description": "Any JSON; a string is sent as text"},
            "tags": TAGS,
        },
    },
    "Receipt": {
        "type": "object",
        "required": ["id", "channel", "subscribers"],
        "properties": {"id": STRING, "channel": CHANNEL, "subscribers": {"type": "integer"}},
    },
    "StreamError": {
        "type": "object",
        "required": ["line", "error", "status"],
        "properties": {
            "line": {"type": "integer", "description": "Its line in the body, from 1"},
            "error": STRING,
            "status": {"type": "integer", "description": "What POST /publish would answer"},
        },
    },
    "Channel": {
        "type": "object",
        "required": ["name", "subscribers", "clock", "last_id"],
        "properties": {
            "name": STRING,
            "subscribers": {"type": "integer"},
            "clock": {"type": "boolean"},
            "last_id": {"type": ["string", "null"]},
        },
    },
}
