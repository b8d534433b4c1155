"""Checks of the access settings: publish tokens (plain or scoped), private channel patterns,
and the subscribe grant keys. Used by ``hub.config``; a ``ValueError`` here becomes a
``ConfigError`` naming the key there."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hub.config_checks import text as _text
from hub.config_checks import texts as _texts

__all__ = [
    "SECRET_KEYS",
    "URL_KEYS",
    "PublishToken",
    "check_cookie_name",
    "check_jwt_secret",
    "check_patterns",
    "check_pem_file",
    "check_tokens",
    "check_webhook_secret",
    "check_webhook_url",
    "redact_url",
]

#: Settings whose values no error, log line or CLI output shows: a config error says
#: ``key = (hidden)``. ``token`` is the key of a scoped token's table (in a TOML error's line).
SECRET_KEYS = frozenset({"publish_tokens", "subscribe_jwt_secret", "webhook_secret", "token"})
#: Settings that are URLs which may carry a password (``redis://:pw@host``,
#: ``nats://user:pw@a,nats://user:pw@b``, ``?password=``): shown through ``redact_url``.
URL_KEYS = frozenset({"backplane", "webhook_url"})

_NEXT_URL = re.compile(r",\s*(?=[A-Za-z][A-Za-z0-9+.-]*://)")
_PASSWORD_PARAM = re.compile(r"(?i)([?&](?:password|pass|pwd|token|secret)=)[^&]*")


def redact_url(url: str) -> str:
    """``url`` (or a comma-separated list of them) without the user and password before each
    host, nor a password in its query: what a config error or a log line may show of it. The
    last ``@`` of each URL ends its credentials, so a password with an unencoded ``@`` is hidden
    whole."""
    shown = []
    for part in _NEXT_URL.split(url):
        scheme, sep, rest = part.partition("://")
        if sep and "@" in rest:
            part = f"{scheme}://***@{rest.rpartition('@')[2]}"
        shown.append(_PASSWORD_PARAM.sub(r"\1***", part))
    return ",".join(shown)


class PublishToken(str):
    """A publish token: a string, as before, which may also carry the channel patterns it is
    limited to (``channels``; None: anywhere) and its own publish rate (``rate`` events a second
    in bursts of ``burst``; None: ``publish_rate``'s). A ``str`` so every user of plain tokens
    (the constant-time comparison in ``hub.auth``) keeps working unchanged."""

    channels: tuple[str, ...] | None = None
    rate: float | None = None
    burst: int | None = None

    @classmethod
    def scoped(
        cls,
        token: str,
        channels: tuple[str, ...] | None,
        rate: float | None = None,
        burst: int | None = None,
    ) -> PublishToken:
        made = cls(token)
        made.channels = channels
        made.rate = rate
        made.burst = burst
        return made


def _token(value: str) -> str:
    if len(value) < 16 or not value.isascii() or not value.isprintable() or " " in value:
        raise ValueError("each token must be at least 16 printable ASCII characters, no spaces")
    return value


_TABLE = '{token = "...", channels = [...], rate = events/s, burst = events}'
_TABLE_KEYS = frozenset({"token", "channels", "rate", "burst"})


def check_tokens(value: Any) -> tuple[PublishToken, ...]:
    """Plain strings (publish anywhere, at ``publish_rate``) or tables: ``{ token = "...",
    channels = ["jobs/*"], rate = 500, burst = 1000 }``, ``token`` and at least one other."""
    if not isinstance(value, list | tuple):
        raise ValueError(f"expected a list of tokens (strings or {_TABLE})")
    tokens = []
    for index, item in enumerate(value):
        if isinstance(item, PublishToken):
            tokens.append(item)
        elif isinstance(item, str):
            tokens.append(PublishToken(_token(item)))
        elif isinstance(item, dict):
            tokens.append(_token_table(index, item))
        else:
            # its type, not its value: a token written unquoted is still a secret
            raise ValueError(
                f"entry {index}: expected a string or a table, not {type(item).__name__}"
            )
    return tuple(tokens)


def _token_table(index: int, item: dict[str, Any]) -> PublishToken:
    where = f"entry {index}: "
    if "token" not in item or not set(item) <= _TABLE_KEYS or len(item) == 1:
        # a table of a token alone says nothing a plain string would not: a mistake
        unknown = ", ".join(sorted(set(item) - _TABLE_KEYS)) or "token alone"
        raise ValueError(f"{where}{unknown}: a token entry is a table {_TABLE}")
    if not isinstance(item["token"], str):
        raise ValueError(f"{where}token must be a string")
    channels = None
    if "channels" in item:
        channels = check_patterns(item["channels"])
        if not channels:
            raise ValueError(f"{where}a scoped token needs at least one channel pattern")
    rate, burst = item.get("rate"), item.get("burst")
    if rate is not None and (
        isinstance(rate, bool) or not isinstance(rate, int | float) or rate < 0
    ):
        raise ValueError(f"{where}rate = {rate!r}: expected events a second, 0 or more (0: none)")
    if burst is not None and (isinstance(burst, bool) or not isinstance(burst, int) or burst < 1):
        raise ValueError(f"{where}burst = {burst!r}: expected a whole number of events, 1 or more")
    return PublishToken.scoped(
        _token(item["token"]), channels, None if rate is None else float(rate), burst
    )


def check_patterns(value: Any) -> tuple[str, ...]:
    """Channel patterns: ``*`` is any run of characters; anything else is literal."""
    patterns = _texts(value)
    for pattern in patterns:
        if not 1 <= len(pattern) <= 200 or not pattern.isprintable():
            raise ValueError(f"{pattern!r} is not a channel pattern (1-200 printable characters)")
    return patterns


def check_jwt_secret(value: Any) -> str:
    text = _text(value)
    if text and len(text.encode()) < 32:
        raise ValueError("an HS256 secret must be at least 32 bytes (or empty: none)")
    return text


def check_webhook_url(value: Any) -> str:
    """An http or https URL with a host, or "" (no webhooks). Checked at load so that a typo
    stops start-up instead of every webhook failing later."""
    from urllib.parse import urlsplit

    text = _text(value).strip()
    if not text:
        return text
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 (raises on a port that is no number)
    except ValueError as problem:
        raise ValueError(f"not a URL ({problem})") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("expected an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError("the URL names no host")
    return text


def check_webhook_secret(value: Any) -> str:
    """The HMAC key of the webhooks' signatures; its value is never echoed in an error."""
    if not isinstance(value, str):
        raise ValueError("expected a string")
    if value and len(value.encode()) < 16:
        raise ValueError("a webhook secret must be at least 16 bytes (or empty: none)")
    return value


def check_pem_file(value: Any) -> str:
    text = _text(value)
    if not text:
        return text
    # Read at start-up, so a bad key stops it with the key's name (hub.grants loads it again).
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(Path(text).read_bytes())
    except OSError as problem:
        raise ValueError(f"cannot read it ({problem.strerror})") from None
    except ValueError:
        raise ValueError("not a PEM public key") from None
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise ValueError("an RSA (RS256) or EC (ES256) public key is expected")
    return text


def check_cookie_name(value: Any) -> str:
    text = _text(value)
    if not text or not all(c.isalnum() or c in "!#$%&'*+-.^_`|~" for c in text):
        raise ValueError("expected a cookie name (letters, digits and !#$%&'*+-.^_`|~)")
    return text
