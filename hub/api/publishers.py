"""Who may publish, and how fast: the token check and the publish rates of every publish route.

One ``Publishers`` per app, shared by the single, batch and streamed publish routes, so a token's
(or a loopback address's) ``publish_rate`` counts its events on all of them, and a token with a
``rate`` of its own on its ``publish_tokens`` entry has a bucket of its own. Over a rate a
publisher gets ``429`` with ``Retry-After`` (and the operator a log line, ``hub.refusals``); the
streamed route waits instead (``wait``), reading more slowly.

A worker of several (``workers``) spends from the hub's one bucket per publisher, leased a
twentieth of a second's worth at a time (``hub.shared_limits``; ``hub.backplane.engine_limits``
says why a lease and not a request per publish, nor a N-th of the rate per worker).
"""

from __future__ import annotations

import math

from aiohttp import web

from hub import auth
from hub.clients import ClientAddresses
from hub.config import Config
from hub.events import InvalidInput
from hub.grants import Patterns
from hub.limits import TokenBuckets
from hub.refusals import Refusals
from hub.shared_limits import SharedLimits

__all__ = ["Publishers", "TooFast", "publish_limits", "retry_after"]


class TooFast(InvalidInput):
    """Over a publish rate: 429, with the seconds until the bucket allows it again."""

    def __init__(self, wait: float, setting: str, rate: float, burst: int) -> None:
        super().__init__(
            f"too many events from this publisher: the limit ({setting}) is {rate:g} a second, "
            f"in bursts of up to {burst} ({setting.replace('rate', 'burst')}); "
            f"retry in {wait:.1f} s",
            status=429,
        )
        self.retry_after = wait


def retry_after(problem: InvalidInput) -> dict[str, str]:
    if not isinstance(problem, TooFast):
        return {}
    return {"Retry-After": str(max(1, math.ceil(problem.retry_after)))}


class Publishers:
    """Who may publish, and how fast: one per app, shared by every publish route, so a
    token's (or an address's) ``publish_rate`` counts its events on all of them. A token
    whose ``publish_tokens`` entry has its own ``rate`` has its own bucket (``publish_limits``)."""

    def __init__(
        self, config: Config, refusals: Refusals, shared: SharedLimits | None = None
    ) -> None:
        self._config = config
        self._shared = shared  # a worker's: the hub's buckets
        self._addresses = ClientAddresses(config.trusted_proxies)
        self._rate = TokenBuckets(config.publish_rate, config.publish_burst)
        self._own = publish_limits(config)
        #: no rate anywhere (False): nothing to look up per publish
        self.limited = self._rate.enabled or any(b.enabled for b, _ in self._own.values())
        self._refusals = refusals
        #: any scoped token: only then is the (slower) scope lookup needed
        self.scoped = any(token.channels is not None for token in config.publish_tokens)

    def check(self, request: web.Request) -> tuple[str | None, Patterns | None]:
        """The request's token (None: loopback without tokens) and its scope (None: any
        channel); raises ``InvalidInput`` 401/403."""
        tokens = self._config.publish_tokens
        if self.scoped:
            return auth.publisher_scope(request, tokens, self._config.publish_cors_origins)
        return auth.check_publisher(request, tokens, self._config.publish_cors_origins), None

    async def wait(self, request: web.Request, token: str | None, events: int) -> float:
        """Spend ``events`` of the publisher's rate: 0.0, or the seconds to wait (nothing spent)."""
        if not self.limited:
            return 0.0
        own = self._own.get(token) if token is not None else None
        buckets, setting = (self._rate, "publish_rate") if own is None else own
        key = token or self._addresses.of(request)
        if self._shared is None or not buckets.enabled:
            return buckets.take(key, events)
        return await self._shared.lease(setting, key, events, buckets.rate, buckets.burst)

    async def spend(self, request: web.Request, token: str | None, events: int) -> None:
        """``wait``, refusing with 429 (and a log line, hub.refusals) instead of waiting."""
        wait = await self.wait(request, token, events)
        if wait:
            config = self._config
            own = self._own.get(token) if token is not None else None
            setting, rate, burst = ("publish_rate", config.publish_rate, config.publish_burst)
            if own is not None:
                setting, rate, burst = own[1], own[0].rate, own[0].burst
            limit = f"{rate:g} events a second, {burst} at once"
            client = self._addresses.of(request)
            self._refusals.refused(client, setting, "a publish", limit)
            raise TooFast(wait, setting, rate, burst)


def publish_limits(config: Config) -> dict[str, tuple[TokenBuckets, str]]:
    """The tokens with a ``rate`` of their own: their bucket and the setting's name as the
    operator wrote it (``publish_tokens[2].rate``), for the 429 and the log line."""
    own = {}
    for index, token in enumerate(config.publish_tokens):
        if token.rate is not None:
            burst = token.burst or max(1, math.ceil(2 * token.rate))
            own[str(token)] = (TokenBuckets(token.rate, burst), f"publish_tokens[{index}].rate")
    return own
