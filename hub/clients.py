"""Who a request comes from: its client address, believing ``X-Forwarded-For`` only from proxies
listed in ``trusted_proxies``.

Rate limits, per-client caps, loopback trust and log lines all key on this one address, so a
client cannot pick its own key by sending a header: ``X-Forwarded-For`` is read only when the
peer is a trusted proxy, and then from the right (each proxy appends the address it saw), up to
the first hop that is not itself a trusted proxy. Everything left of that hop was written by the
client and proves nothing. A proxy's header from a peer that is not trusted is ignored, and, when
limits key on the address (``watch``), warned about once (``hub.refusals``).
"""

from __future__ import annotations

import functools
import ipaddress

from aiohttp import web

from hub.refusals import Refusals

__all__ = ["PROXY_HEADERS", "ClientAddresses", "came_through_proxy"]

#: Headers a proxy adds; a request with any of them did not come straight from its client.
PROXY_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def came_through_proxy(request: web.BaseRequest) -> bool:
    # Spelled out rather than any() over PROXY_HEADERS: this runs on every loopback publish,
    # and the generator cost more than the three lookups.
    headers = request.headers
    return "Forwarded" in headers or "X-Forwarded-For" in headers or "X-Real-IP" in headers


def _parse(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address as proxies write it: ``1.2.3.4``, ``1.2.3.4:5678``, ``::1``, ``[::1]:80``."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


class ClientAddresses:
    """``of(request)``: the client address of a request, as text (``""`` when unknown)."""

    def __init__(self, trusted_proxies: tuple[str, ...], watch: bool = False) -> None:
        """``watch``: warn once about proxy headers from an untrusted peer (limits are on)."""
        self._watch = watch
        self._networks: tuple[_Network, ...] = tuple(
            ipaddress.ip_network(net, strict=False) for net in trusted_proxies
        )
        # Cached per address text: a parse per request was measurable on the publish path.
        self._trusted = functools.lru_cache(maxsize=4096)(self._is_trusted)

    def _is_trusted(self, address: str) -> bool:
        parsed = _parse(address)
        return parsed is not None and any(parsed in net for net in self._networks)

    def of(self, request: web.BaseRequest) -> str:
        remote = request.remote or ""
        if not self._networks or not self._trusted(remote):
            if self._watch and came_through_proxy(request):  # until warned: a header lookup
                Refusals.proxy_headers(remote)
                self._watch = False
            return remote  # the common case: one attribute, no header read
        hops = [
            hop
            for value in request.headers.getall("X-Forwarded-For", ())
            for hop in value.split(",")
        ]
        client = remote
        for hop in reversed(hops):
            parsed = _parse(hop)
            if parsed is None:
                return client  # garbage from further left: the last hop we could believe
            client = str(parsed)
            if not self._trusted(client):
                return client
        return client
