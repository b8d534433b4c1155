"""Who may subscribe to a private channel: the one place subscribe authorization lives.

Channels whose name matches a ``private_channels`` pattern need a grant; every other channel
stays public, and a stream naming no private channel never gets here (``Gate.needs_grant`` is
one ``hub.patterns`` match, none without ``private_channels``). A grant reaches the hub in one
of three ways, tried in this order:

1. ``?ticket=<opaque>``: a one-time ticket from ``POST /tickets`` (``hub.api.private``), spent
   by this request on whichever hub process it reaches (the backplane's ``Tickets``), because a
   native ``EventSource`` cannot send headers and a long-lived token must never sit in a URL;
2. ``Authorization: Bearer <jwt>`` (fetch-based clients);
3. the cookie named by ``subscribe_cookie`` (an HttpOnly cookie a page's backend set: native
   ``EventSource`` reconnects carry it by themselves).

A JWT is accepted only with the configured algorithms (HS256 with ``subscribe_jwt_secret``,
RS256 or ES256 with ``subscribe_jwt_public_key``: the key's type decides which), never ``none``;
``exp`` and ``channels`` (a list of patterns) are required; ``nbf`` and ``iat`` are checked with
``LEEWAY`` seconds of clock skew. Refusals: no grant → 401; any grant that does not let this
stream through (invalid, expired, not covering, a spent ticket) → 403; the message names the
reason, never the token. A browser's ``EventSource`` stops for good on both, as it should.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from hub.backplane import Tickets
from hub.config import Config, ConfigError
from hub.events import InvalidInput
from hub.patterns import Patterns
from hub.presence import tracked_of
from hub.ticket_quota import TicketQuota

__all__ = ["LEEWAY", "Gate", "Patterns", "ticket_digest"]

log = logging.getLogger("hub.grants")

#: Seconds of clock skew allowed on ``exp``, ``nbf`` and ``iat``.
LEEWAY = 30
#: Patterns a grant's ``channels`` claim may hold at most, and a grant's length at most.
MAX_GRANT_PATTERNS = 100
MAX_GRANT_BYTES = 8192


@functools.lru_cache(maxsize=1024)
def _patterns_of(claim: tuple[str, ...]) -> Patterns:
    """Grants repeat (a user's token, on every reconnect): compile each pattern set once."""
    return Patterns(claim)


def ticket_digest(ticket: str) -> str:
    """What the backplane keeps: a digest, so the store never holds a usable ticket."""
    return hashlib.sha256(ticket.encode()).hexdigest()


def _load_public_key(path: str) -> tuple[Any, str]:
    try:
        key = load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError) as problem:
        raise ConfigError(
            f"subscribe_jwt_public_key = {path!r}: not a PEM public key ({problem})"
        ) from None
    if isinstance(key, rsa.RSAPublicKey):
        return key, "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key, "ES256"
    raise ConfigError(f"subscribe_jwt_public_key = {path!r}: an RSA or EC key is expected")


class Gate:
    """Checks a stream's private channels against the grant its request carries."""

    def __init__(self, config: Config, tickets: Tickets | None) -> None:
        self.private = Patterns(config.private_channels) if config.private_channels else None
        # presence/C is as private as C, and a grant of C covers it (hub.presence)
        self._presence = Patterns(config.presence) if config.presence else None
        self.tickets = tickets
        #: tickets per publisher (POST /tickets and the demo's ticket route share it)
        self.ticket_quota = TicketQuota(config)
        self._cookie = config.subscribe_cookie
        self._keys: dict[str, Any] = {}  # algorithm -> its verification key
        if config.subscribe_jwt_secret:
            self._keys["HS256"] = config.subscribe_jwt_secret.encode()
        if config.subscribe_jwt_public_key:
            key, algorithm = _load_public_key(config.subscribe_jwt_public_key)
            self._keys[algorithm] = key

    def is_private(self, name: str) -> bool:
        private = self.private
        if private is None:
            return False
        tracked = tracked_of(name, self._presence)
        return private.match(name) or (tracked is not None and private.match(tracked))

    def needs_grant(self, channels: Sequence[str]) -> Sequence[str]:
        """The private ones among a stream's channels (none without ``private_channels``); a
        shared empty tuple when none, as the handler's frame keeps it for the stream's life."""
        if self.private is None:
            return ()
        return [name for name in channels if self.is_private(name)] or ()

    async def check(self, request: web.Request, private: Sequence[str]) -> float | None:
        """``grant`` without the subject."""
        return (await self.grant(request, private))[0]

    async def grant(
        self, request: web.Request, private: Sequence[str]
    ) -> tuple[float | None, str | None]:
        """Raise ``InvalidInput`` (401/403) unless the request's grant covers ``private``;
        returns when the stream must end (a JWT's ``exp`` + ``LEEWAY``, ``time.time()``
        seconds; None for a ticket, spent once at the start) and the JWT's ``sub`` (None
        without one, or for a ticket). Raises ``BackplaneUnavailable`` while a ticket cannot
        be looked up."""
        ticket = request.query.get("ticket")
        if ticket is not None:
            await self._spend(ticket, private)
            return None, None
        token = _bearer(request) or request.cookies.get(self._cookie)
        if not token:
            raise InvalidInput(
                f"channel {private[0]!r} is private: send a grant (Authorization: Bearer <jwt>, "
                f"the {self._cookie} cookie, or ?ticket=)",
                status=401,
            )
        claims = self._verify(token)
        sub = claims.get("sub")
        subject = sub if isinstance(sub, str) else None
        patterns = _patterns_of(tuple(claims["channels"]))
        for name in private:
            if not self._covers(patterns.match, name):
                log.info("grant of %s refused: it does not cover %s", subject or "?", name,
                         extra={"event": "grant-refused", "sub": subject})  # fmt: skip
                raise InvalidInput(f"the grant does not cover channel {name!r}", status=403)
        log.debug("private stream for %s on %s", subject or "?", ", ".join(private),
                  extra={"event": "grant", "sub": subject})  # fmt: skip
        return float(claims["exp"]) + LEEWAY, subject

    def _covers(self, granted: Callable[[str], bool], name: str) -> bool:
        """A grant of C covers presence/C too."""
        if granted(name):
            return True
        tracked = tracked_of(name, self._presence)
        return tracked is not None and granted(tracked)

    async def _spend(self, ticket: str, private: Sequence[str]) -> None:
        # Tickets are URL-safe base64 (secrets.token_urlsafe): anything else is not one, and a
        # lone surrogate (a percent-encoded byte >= 0x80) would not survive ticket_digest's encode.
        if self.tickets is None or not 1 <= len(ticket) <= 200 or not ticket.isascii():
            raise InvalidInput("the ticket is spent, expired or unknown", status=403)
        channels = await self.tickets.spend_ticket(ticket_digest(ticket))
        if channels is None:
            raise InvalidInput("the ticket is spent, expired or unknown", status=403)
        covered = set(channels)
        for name in private:
            if not self._covers(covered.__contains__, name):
                raise InvalidInput(f"the ticket does not cover channel {name!r}", status=403)

    def _verify(self, token: str) -> dict[str, Any]:
        if len(token) > MAX_GRANT_BYTES:
            raise InvalidInput("the grant is too long", status=403)
        # A JWT is base64url and dots. Header bytes >= 0x80 arrive as lone surrogates (aiohttp
        # decodes them with surrogateescape), which PyJWT's encode("utf-8") turns into a 500.
        if not token.isascii():
            raise InvalidInput("the grant is not a JWT (it holds non-ASCII bytes)", status=403)
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
        except jwt.InvalidTokenError:
            raise InvalidInput("the grant is not a JWT", status=403) from None
        key = self._keys.get(algorithm) if isinstance(algorithm, str) else None
        if key is None:
            accepted = ", ".join(sorted(self._keys)) or "none: no key is configured"
            raise InvalidInput(
                f"grant algorithm {algorithm!r} is not accepted (accepted: {accepted})", status=403
            )
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[str(algorithm)],
                options={"require": ["exp", "channels"], "verify_aud": False},
                leeway=LEEWAY,
            )
        except jwt.ExpiredSignatureError:
            raise InvalidInput("the grant has expired", status=403) from None
        except jwt.ImmatureSignatureError:
            raise InvalidInput("the grant is not valid yet (nbf or iat)", status=403) from None
        except jwt.MissingRequiredClaimError as problem:
            raise InvalidInput(f"the grant lacks the {problem.claim!r} claim", 403) from None
        except jwt.InvalidSignatureError:
            raise InvalidInput("the grant's signature is not valid", status=403) from None
        except jwt.InvalidTokenError as problem:
            raise InvalidInput(f"the grant is not valid ({type(problem).__name__})", 403) from None
        channels = claims["channels"]
        if (
            not isinstance(channels, list)
            or not 1 <= len(channels) <= MAX_GRANT_PATTERNS
            or not all(isinstance(c, str) and c for c in channels)
        ):
            raise InvalidInput(
                f"the grant's channels claim must be a list of 1-{MAX_GRANT_PATTERNS} patterns",
                status=403,
            )
        return claims


def _bearer(request: web.BaseRequest) -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidInput("the Authorization header must be: Bearer <jwt>", status=401)
    return token.strip()
