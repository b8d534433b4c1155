"""The publish handlers (``POST /channels/{name}/events``, ``POST /publish``) and their input.

Everything a publisher sends is checked here before the hub sees it: the token (``hub.auth``),
the content type, the body size, the JSON, each event's fields, the idempotency key. A batch is
all-or-nothing: one bad item and nothing is published. The common single publish takes
``hub.api.publish_single`` first, a fast path that must answer as ``publish_channel`` does and
hands it every other case.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

from aiohttp import web

from hub import auth
from hub.api.publish_body import LATER, json_now, read_json
from hub.api.publish_single import single_publisher
from hub.api.publishers import Publishers, retry_after
from hub.api.responses import answer, cors_headers, json_errors, json_response
from hub.api.subscribe import CHANNEL_PATH
from hub.backplane import BackplaneFull, BackplaneUnavailable, ChannelClosed, ChannelDeleted
from hub.config import Config
from hub.events import (
    Draft,
    InvalidInput,
    check_channel,
    check_event_name,
    check_tags,
    encode_draft,
)
from hub.grants import Patterns
from hub.hub import Hub
from hub.presence import tracked_of
from hub.ticker import CLOCK_PREFIX

__all__ = ["Publishers", "add_publish_routes", "batch_item", "not_published"]

_SINGLE_FIELDS = frozenset({"event", "data", "tags"})
_BATCH_FIELDS = frozenset({"channel", "event", "data", "tags"})
_MAX_IDEMPOTENCY_KEY = 200


def _idempotency_key(request: web.Request, scope: str, token: str | None) -> str | None:
    """The backplane's key: per publisher (so one token can neither read another's receipt nor
    make another's later publish a silent replay) and per channel (scope "" for batches)."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= _MAX_IDEMPOTENCY_KEY or not key.isascii() or not key.isprintable():
        raise InvalidInput(
            f"Idempotency-Key must be 1-{_MAX_IDEMPOTENCY_KEY} printable ASCII characters"
        )
    # Starts with a digit: the demo's keys (hub.demo) are a namespace of their own.
    return f"{len(scope)}:{scope}:{_publisher_id(token)}:{key}"


@functools.lru_cache(maxsize=256)
def _publisher_id(token: str | None) -> str:
    """A token's name in the backplane's keys: a digest, as a store must never hold a token.
    "-" for loopback publishers without tokens (one publisher: the machine)."""
    if token is None:
        return "-"
    return hashlib.sha256(b"ssehub publisher\0" + token.encode()).hexdigest()[:32]


@functools.lru_cache(maxsize=4)
def _patterns(patterns: tuple[str, ...]) -> Patterns:
    """``presence``'s patterns, compiled once (a config holds one tuple for its life)."""
    return Patterns(patterns)


def _draft_of(item: Any, channel: str, fields: frozenset[str], where: str, config: Config) -> Draft:
    if not isinstance(item, dict):
        raise InvalidInput(f"{where}must be a JSON object")
    if not fields.issuperset(item):
        unknown = sorted(set(item) - fields)
        allowed = ", ".join(sorted(fields))
        raise InvalidInput(f"{where}unknown field {unknown[0]!r}; allowed: {allowed}")
    if "data" not in item:
        raise InvalidInput(f"{where}data is required")
    if channel.startswith(CLOCK_PREFIX):  # is_clock(), inlined on the publish path
        raise InvalidInput(f"{where}{channel!r} is a clock channel: only its ticker writes it")
    if config.presence and tracked_of(channel, _patterns(config.presence)) is not None:
        raise InvalidInput(f"{where}{channel!r} is a presence channel: only the hub writes it")
    event = check_event_name(item.get("event", "message"))
    try:
        tags = check_tags(item["tags"]) if "tags" in item else b""
        return encode_draft(channel, event, item["data"], config.max_event_bytes, tags)
    except InvalidInput as problem:
        raise InvalidInput(f"{where}{problem}", problem.status) from None


def batch_item(item: Any, config: Config, scope: Patterns | None, where: str = "") -> Draft:
    """One ``{"channel", "event", "data", "tags"}`` item of ``POST /publish`` (or one line of
    ``POST /publish/stream``), checked and encoded; ``where`` starts each error message."""
    if not isinstance(item, dict):
        raise InvalidInput(f"{where}must be a JSON object")
    channel = item.get("channel")
    if not isinstance(channel, str):
        raise InvalidInput(f"{where}channel is required (a string)")
    try:
        check_channel(channel)
    except InvalidInput as problem:
        raise InvalidInput(f"{where}{problem}") from None
    auth.check_scope(scope, channel, where)
    return _draft_of(item, channel, _BATCH_FIELDS, where, config)


def _batch_drafts(body: Any, config: Config, scope: Patterns | None = None) -> list[Draft]:
    if not isinstance(body, list) or not body:
        raise InvalidInput('the body must be a non-empty JSON array of {"channel", "data", ...}')
    if len(body) > config.max_batch:
        raise InvalidInput(
            f"{len(body)} events in one batch; the limit (max_batch) is {config.max_batch}", 413
        )
    return [
        batch_item(item, config, scope, f"events[{index}]: ") for index, item in enumerate(body)
    ]


def not_published(problem: ChannelDeleted | BackplaneUnavailable | BackplaneFull) -> InvalidInput:
    """What the publisher is told when the backplane refused: 409 (closed: finished for good
    until its history expires), 410 (deleted) or 503, with its message."""
    if isinstance(problem, ChannelClosed):
        return InvalidInput(
            f"not published: {problem} (finished; its history stays readable until history_ttl)",
            409,
        )
    if isinstance(problem, ChannelDeleted):
        return InvalidInput(
            f"not published: {problem}; it takes events again history_ttl after", 410
        )
    return InvalidInput(f"not published: {problem}", 503)


async def _publish(
    hub: Hub,
    request: web.Request,
    drafts: list[Draft],
    scope: str,
    single: bool,
    token: str | None,
) -> web.Response:
    key = _idempotency_key(request, scope, token) if "Idempotency-Key" in request.headers else None
    # No publish_cors_origins (the default): no CORS headers on any publish, no Origin lookup.
    headers = cors_headers(hub.config, request) if hub.config.publish_cors_origins else {}
    try:
        published = await hub.publish(drafts, key)
    except ChannelDeleted as gone:
        return answer(not_published(gone), headers)
    except (BackplaneUnavailable, BackplaneFull) as problem:
        retry_after = "1" if isinstance(problem, BackplaneUnavailable) else "5"
        return answer(not_published(problem), {"Retry-After": retry_after, **headers})
    if published.replayed:
        headers["Idempotent-Replayed"] = "true"
    census = hub.census
    # The channel from the id, not the draft: a replayed key's ids are the first publish's,
    # whatever this retry's body holds (docs/publishing.md: "whatever its body").
    if single:  # the hot one: no generator, no list
        ident = published.ids[0]
        name = ident.partition(":")[2]
        receipt = {"id": ident, "channel": name, "subscribers": census.subscriber_count(name)}
        return json_response(receipt, 202, headers)
    channels = (ident.partition(":")[2] for ident in published.ids)
    receipts = [
        {"id": ident, "channel": name, "subscribers": census.subscriber_count(name)}
        for ident, name in zip(published.ids, channels, strict=True)
    ]
    return json_response({"events": receipts}, 202, headers)


def _channel_resource(app: web.Application) -> web.Resource:
    """The resource of ``CHANNEL_PATH`` the subscribe route made, if any, for the publish route
    too: aiohttp tries each resource under a path's first segment in turn (a regex match and a
    match dict each), so a POST on a resource of its own paid for the GET's first."""
    for resource in app.router.resources():
        if isinstance(resource, web.Resource) and resource.raw_match(CHANNEL_PATH):
            return resource
    return app.router.add_resource(CHANNEL_PATH)


def add_publish_routes(app: web.Application, hub: Hub, publishers: Publishers) -> None:
    config = hub.config
    # None without any publish rate: nothing to count per publish
    spend = publishers.spend if publishers.limited else None
    scoped = publishers.scoped

    async def publish_channel(request: web.Request) -> web.Response:
        # Errors caught here rather than by the json_errors wrapper: this is the hottest
        # request, and a wrapper is one more coroutine per publish.
        try:
            if scoped:
                token, scope = auth.publisher_scope(
                    request, config.publish_tokens, config.publish_cors_origins
                )
                auth.check_scope(scope, check_channel(request.match_info["name"]))
            else:
                token = auth.check_publisher(
                    request, config.publish_tokens, config.publish_cors_origins
                )
            if spend is not None:
                await spend(request, token, 1)
            channel = check_channel(request.match_info["name"])
            body = json_now(request, config)
            if body is LATER:
                body = await read_json(request, config)
            draft = _draft_of(body, channel, _SINGLE_FIELDS, "", config)
            return await _publish(hub, request, [draft], channel, True, token)
        except InvalidInput as problem:
            return answer(problem, cors_headers(config, request) | retry_after(problem))

    async def publish_parsed(
        request: web.Request, body: Any, channel: str, token: str | None
    ) -> web.Response:
        """``publish_channel`` from a parsed body on: ``publish_single``'s way back to it."""
        draft = _draft_of(body, channel, _SINGLE_FIELDS, "", config)
        return await _publish(hub, request, [draft], channel, True, token)

    async def publish_batch(request: web.Request) -> web.Response:
        try:
            token, scope = publishers.check(request)
            drafts = _batch_drafts(await read_json(request, config), config, scope)
            if spend is not None:
                await spend(request, token, len(drafts))
        except InvalidInput as problem:
            return answer(problem, cors_headers(config, request) | retry_after(problem))
        return await _publish(hub, request, drafts, "", False, token)

    single = (
        publish_channel
        if scoped
        else single_publisher(hub, config, spend, publish_channel, publish_parsed)
    )
    _channel_resource(app).add_route("POST", single)
    app.router.add_post("/publish", json_errors(config, publish_batch))
