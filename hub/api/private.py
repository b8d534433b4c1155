"""``POST /tickets`` (one-time subscribe tickets) and ``DELETE /channels/{name}``.

Both take publish auth, as the services that own private channels hold publish tokens, and
respect a scoped token's patterns. A ticket is opaque and random; the backplane keeps only its
digest (``hub.grants.ticket_digest``), for ``ttl`` seconds, and it opens one stream, once, on any
hub process. Deleting a channel closes its streams on every process with ``event: close``
(``Hub.deleted``), ends what its history serves, and leaves a tombstone for ``history_ttl``
seconds: publishes answer 410, and a subscribe naming only deleted channels answers 204.
"""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web

from hub import auth
from hub.api.publish_body import read_json
from hub.api.responses import answer, cors_headers, error, json_errors, json_response
from hub.backplane import BackplaneFull, BackplaneUnavailable, Deletion, Tickets
from hub.clients import ClientAddresses
from hub.events import InvalidInput, check_channel
from hub.grants import Gate, Patterns, ticket_digest
from hub.hub import Hub
from hub.ticker import is_clock
from hub.ticket_quota import TooManyTickets

__all__ = ["DEFAULT_TICKET_TTL", "MAX_TICKET_TTL", "add_private_routes", "ticket_response"]

DEFAULT_TICKET_TTL = 30
MAX_TICKET_TTL = 300
_TICKET_FIELDS = frozenset({"channels", "ttl"})


def _ticket_request(body: Any, max_channels: int, scope: Patterns | None) -> tuple[list[str], int]:
    if not isinstance(body, dict):
        raise InvalidInput('the body must be a JSON object: {"channels": [...], "ttl": 30}')
    unknown = sorted(set(body) - _TICKET_FIELDS)
    if unknown:
        raise InvalidInput(f"unknown field {unknown[0]!r}; allowed: channels, ttl")
    channels = body.get("channels")
    if not isinstance(channels, list) or not channels:
        raise InvalidInput("channels is required: a non-empty list of channel names")
    if len(channels) > max_channels:
        raise InvalidInput(
            f"{len(channels)} channels; a stream takes at most {max_channels} (max_stream_channels)"
        )
    names = []
    for index, name in enumerate(channels):
        if not isinstance(name, str):
            raise InvalidInput(f"channels[{index}] must be a string (an exact channel name)")
        names.append(check_channel(name))
        auth.check_scope(scope, name)
    ttl = body.get("ttl", DEFAULT_TICKET_TTL)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= MAX_TICKET_TTL:
        raise InvalidInput(f"ttl must be whole seconds from 1 to {MAX_TICKET_TTL}")
    return list(dict.fromkeys(names)), ttl


def add_private_routes(
    app: web.Application, hub: Hub, gate: Gate, deletion: Deletion | None
) -> None:
    config = hub.config

    addresses = ClientAddresses(config.trusted_proxies)

    def scope_of(request: web.Request) -> Patterns | None:
        return auth.publisher_scope(request, config.publish_tokens, config.publish_cors_origins)[1]

    async def issue_ticket(request: web.Request) -> web.Response:
        token, scope = auth.publisher_scope(
            request, config.publish_tokens, config.publish_cors_origins
        )
        body = await read_json(request, config)
        channels, ttl = _ticket_request(body, config.max_stream_channels, scope)
        headers = cors_headers(config, request)
        # a token's share, or a loopback publisher's (no tokens): its address
        publisher = f"token:{token}" if token is not None else f"address:{addresses.of(request)}"
        try:
            await gate.ticket_quota.claim(publisher, ttl)
        except TooManyTickets as problem:
            return answer(problem, {**problem.headers, **headers})
        return await ticket_response(gate.tickets, channels, ttl, headers)

    async def delete_channel(request: web.Request) -> web.Response:
        scope = scope_of(request)
        name = check_channel(request.match_info["name"])
        auth.check_scope(scope, name)
        headers = cors_headers(config, request)
        if is_clock(name):
            return error(400, f"{name!r} is a clock channel: it cannot be deleted", headers)
        if deletion is None:
            return error(501, "this backplane cannot delete channels", headers)
        streams = hub.census.subscriber_count(name)  # counted first: deleting closes the local ones
        try:
            done = await deletion.delete_channel(name, anyway=streams > 0)
        except BackplaneUnavailable as problem:
            return error(503, f"not deleted: {problem}", {"Retry-After": "1", **headers})
        if done is None:
            return error(410, f"channel {name!r} is deleted already", headers)
        if not done:
            return error(404, f"no channel {name!r}: no history and no subscribers", headers)
        return json_response({"channel": name, "closed": streams}, 200, headers)

    app.router.add_post("/tickets", json_errors(config, issue_ticket))
    app.router.add_delete("/channels/{name:[\\s\\S]+}", json_errors(config, delete_channel))


async def ticket_response(
    tickets: Tickets | None, channels: list[str], ttl: int, headers: dict[str, str]
) -> web.Response:
    """A new ticket for ``channels``: 201 ``{"ticket", "expires_in"}``, or the JSON refusal
    (501 without a ticket store, 503 while the backplane cannot keep one)."""
    headers = {"Cache-Control": "no-store", **headers}
    if tickets is None:
        return error(501, "this backplane keeps no tickets", headers)
    ticket = secrets.token_urlsafe(32)
    try:
        await tickets.issue_ticket(ticket_digest(ticket), channels, ttl)
    except (BackplaneUnavailable, BackplaneFull) as problem:
        return error(503, f"no ticket issued: {problem}", {"Retry-After": "1", **headers})
    return json_response({"ticket": ticket, "expires_in": ttl}, 201, headers)


def tickets_of(backplane: object) -> Tickets | None:
    return backplane if isinstance(backplane, Tickets) else None
