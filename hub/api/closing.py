"""``POST /channels/{name}/close``: a finished channel, still readable.

Deleting a channel (``hub.api.private``) makes its history unservable; an LLM's answer, a job's
log, is *finished* instead: no more events, but whoever reloads the page, on any device, reads
it whole until ``history_ttl``. Closing does that: the backplane (``hub.backplane.Closing``)
refuses publishes to the channel from then on (409), atomically with the close, and tells every
process's hub in order with the channel's events, so each live stream on it gets
``event: close`` after its last event and ends (or carries on with its other channels); a
subscriber arriving later gets the history it asks for, then ``event: close`` and the end.

Publish auth, as ``DELETE /channels/{name}`` (the producer that owns a channel closes it), and a
scoped token's patterns. Idempotent: closing twice answers 200 both times, saying which.
"""

from __future__ import annotations

from aiohttp import web

from hub import auth
from hub.api.publish_body import read_json
from hub.api.responses import cors_headers, error, json_errors, json_response
from hub.backplane import BackplaneUnavailable, Closing
from hub.events import InvalidInput, check_channel
from hub.hub import Hub
from hub.ticker import is_clock

__all__ = ["CLOSE_PATH", "add_close_route"]

CLOSE_PATH = r"/channels/{name:[\s\S]+}/close"


def add_close_route(app: web.Application, hub: Hub, closing: Closing | None) -> None:
    config = hub.config

    async def close_channel(request: web.Request) -> web.Response:
        scope = auth.publisher_scope(request, config.publish_tokens, config.publish_cors_origins)
        name = check_channel(request.match_info["name"])
        auth.check_scope(scope[1], name)
        if request.body_exists and await read_json(request, config) != {}:
            raise InvalidInput("the body, if any, must be {}: closing takes no options")
        headers = cors_headers(config, request)
        if is_clock(name):
            return error(400, f"{name!r} is a clock channel: it cannot be closed", headers)
        if closing is None:
            return error(501, "this backplane cannot close channels", headers)
        streams = hub.census.subscriber_count(name)  # counted first: closing ends the local ones
        try:
            done = await closing.close_channel(name)
        except BackplaneUnavailable as problem:
            return error(503, f"not closed: {problem}", {"Retry-After": "1", **headers})
        if done is None:
            return error(410, f"channel {name!r} is deleted", headers)
        body = {"channel": name, "already_closed": not done, "subscribers": streams}
        return json_response(body, 200, headers)

    app.router.add_post(CLOSE_PATH, json_errors(config, close_channel))
