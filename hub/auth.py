"""Who may publish: a bearer token from ``publish_tokens``, or, with none configured, loopback only.

All publish authorization lives here, so private channels (subscribe tokens) can be added as a
second function of this module without touching the routes' logic.

A request that carries a proxy's header (``Forwarded``, ``X-Forwarded-For``, ``X-Real-IP``) came
through a proxy, and a proxy on the same machine makes every client look like loopback: such a
request is never a loopback client, whatever its peer address.

Nor is a request a web page made: any page a browser on this machine shows (an ad in a tab) can
send requests to 127.0.0.1, and the browser marks them with ``Origin``. A request whose
``Origin`` is not in ``publish_cors_origins`` (nor the hub's own page, on a loopback host name:
a DNS-rebound name is not one) is not trusted as a loopback publisher.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress

from aiohttp import web

from hub.clients import PROXY_HEADERS, came_through_proxy
from hub.config import PublishToken
from hub.events import InvalidInput
from hub.patterns import Patterns

__all__ = [
    "check_publisher",
    "check_scope",
    "is_loopback",
    "is_loopback_address",
    "publisher_scope",
]


def is_loopback(request: web.BaseRequest) -> bool:
    """A client on this machine. A request a proxy forwarded (``Forwarded``,
    ``X-Forwarded-For`` or ``X-Real-IP``) is not one, even from 127.0.0.1: a front such as
    ``scripts/h2-front`` on the same machine would otherwise open publishing to everyone."""
    return is_loopback_address(request.remote) and not came_through_proxy(request)


@functools.lru_cache(maxsize=4096)
def is_loopback_address(remote: str | None) -> bool:
    """Cached: parsing the address was a twentieth of a publish request's cost."""
    if remote is None or remote == "" or remote.startswith("/"):  # a unix socket: local
        return True
    try:
        return ipaddress.ip_address(remote.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


#: Host names that only ever mean this machine (a rebound DNS name is none of them).
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})


def _trusted_origin(request: web.BaseRequest, origins: tuple[str, ...]) -> bool:
    """No ``Origin`` (curl, a backend), one in ``origins``, or the hub's own page reached by a
    loopback name. Any other is a web page of another site: not a loopback publisher."""
    origin = request.headers.get("Origin")
    if origin is None or origin in origins or "*" in origins:
        return True
    host = request.host.lower()
    name = host.partition("]")[0] + "]" if host.startswith("[") else host.partition(":")[0]
    loopback_name = name in _LOOPBACK_HOSTS or name.endswith(".localhost")
    return loopback_name and origin.lower() == f"{request.scheme}://{host}"


def check_publisher(
    request: web.BaseRequest, tokens: tuple[str, ...], origins: tuple[str, ...]
) -> str | None:
    """Raise ``InvalidInput`` (401 or 403) unless the request may publish; return the token
    it publishes with (the key of its rate limit), None with no tokens configured.
    ``origins``: ``publish_cors_origins``, the web pages that count as loopback publishers."""
    if not tokens:
        # is_loopback() and _trusted_origin()'s first test spelled out: this runs on every
        # loopback publish, and they were three Python calls of each.
        headers = request.headers
        proxied = False
        for name in PROXY_HEADERS:  # came_through_proxy()
            proxied = proxied or name in headers
        if is_loopback_address(request.remote) and not proxied:
            if "Origin" not in headers or _trusted_origin(request, origins):
                return None
            raise InvalidInput(
                "publishing is open to loopback clients only, and a web page of another "
                "origin is not one (allow its origin in publish_cors_origins, or configure "
                "publish_tokens)",
                status=403,
            )
        raise InvalidInput(
            "publishing is open to loopback clients only (not through a proxy): no "
            "publish_tokens are configured",
            status=403,
        )
    header = request.headers.get("Authorization")
    if header is None:
        raise InvalidInput("missing Authorization: Bearer <token>", status=401)
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidInput("the Authorization header must be: Bearer <token>", status=401)
    token = token.strip()
    if not token.isascii():  # tokens are printable ASCII (config.py); headers may hold anything
        raise InvalidInput("this token may not publish", status=403)
    token_bytes = token.encode()
    # compare_digest against every token, so timing says nothing about which one nearly matched
    matched = False
    for allowed in tokens:
        matched |= hmac.compare_digest(token_bytes, allowed.encode())
    if not matched:
        raise InvalidInput("this token may not publish", status=403)
    return token


# -- scoped tokens ---------------------------------------------------------------------------


def publisher_scope(
    request: web.BaseRequest, tokens: tuple[PublishToken, ...], origins: tuple[str, ...]
) -> tuple[str | None, Patterns | None]:
    """``check_publisher``, then the patterns the request's token is limited to (None: any
    channel), with the token. Only for a hub with scoped tokens: the others call
    ``check_publisher`` alone."""
    token = check_publisher(request, tokens, origins)
    if token is None:
        return None, None
    found: PublishToken | None = None
    for allowed in tokens:  # every one compared, as in check_publisher
        if hmac.compare_digest(token.encode(), allowed.encode()):
            found = allowed
    if found is None or found.channels is None:
        return token, None
    return token, _scope(found.channels)


@functools.lru_cache(maxsize=256)
def _scope(channels: tuple[str, ...]) -> Patterns:
    return Patterns(channels)


def check_scope(scope: Patterns | None, channel: str, where: str = "") -> None:
    """403 naming the channel when a scoped token reaches outside its patterns."""
    if scope is not None and not scope.match(channel):
        raise InvalidInput(f"{where}this token may not publish to channel {channel!r}", 403)
