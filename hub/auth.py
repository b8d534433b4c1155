"""Who may publish: a bearer token from ``publish_tokens``, or, with none configured, loopback only.

All publish authorization lives here, so private channels (subscribe tokens) can be added as a
second function of this module without touching the routes' logic.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress

from aiohttp import web

from hub.events import InvalidInput

__all__ = ["check_publisher", "is_loopback"]


def is_loopback(request: web.BaseRequest) -> bool:
    return _is_loopback_address(request.remote)


@functools.lru_cache(maxsize=4096)
def _is_loopback_address(remote: str | None) -> bool:
    """Cached: parsing the address was a twentieth of a publish request's cost."""
    if remote is None or remote == "" or remote.startswith("/"):  # a unix socket: local
        return True
    try:
        return ipaddress.ip_address(remote.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def check_publisher(request: web.BaseRequest, tokens: tuple[str, ...]) -> None:
    """Raise ``InvalidInput`` (401 or 403) unless the request may publish."""
    header = request.headers.get("Authorization")
    if not tokens:
        if is_loopback(request):
            return
        raise InvalidInput(
            "publishing is open to loopback clients only: no publish_tokens are configured",
            status=403,
        )
    if header is None:
        raise InvalidInput("missing Authorization: Bearer <token>", status=401)
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidInput("the Authorization header must be: Bearer <token>", status=401)
    token_bytes = token.strip().encode()
    # compare_digest against every token, so timing says nothing about which one nearly matched
    matched = False
    for allowed in tokens:
        matched |= hmac.compare_digest(token_bytes, allowed.encode())
    if not matched:
        raise InvalidInput("this token may not publish", status=403)
