"""What every handler of the dialect is given at wiring, and the checks and answers they share:
the channel of a URL, who may write (as ``POST /channels/{name}/events``) and read (as a
subscribe), the request body under the hub's limits, the headers of every answer."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from hub import auth
from hub.admission import Admission
from hub.api.publish_body import read_body
from hub.api.publishers import Publishers
from hub.api.responses import cors_headers, error
from hub.backplane.streams import Streams
from hub.clients import ClientAddresses
from hub.config import Config
from hub.dialects.durable.wire import Wire
from hub.events import InvalidInput, check_channel
from hub.grants import Gate
from hub.hub import Hub
from hub.metrics import Metrics
from hub.refusals import Refusals
from hub.ticker import is_clock

__all__ = ["SECURITY", "Context", "Grant", "body_of", "fail", "headers_for"]

#: A read's grant: when its stream must end (a JWT's expiry) and its ``sub``; None, None for a
#: public channel or a ticket.
Grant = tuple[float | None, str | None]

#: How long a cache may keep a page, and serve it stale while it asks again (section 10.1).
_PAGE_CACHE = "max-age=60, stale-while-revalidate=300"
#: On every answer (the protocol's section 12.7): no sniffing a stream's bytes as HTML, and
#: readable from other origins' pages as CORS allows.
SECURITY = {"X-Content-Type-Options": "nosniff", "Cross-Origin-Resource-Policy": "cross-origin"}
#: The response headers a page's script may read (CORS hides the others).
EXPOSED = (
    "Stream-Next-Offset, Stream-Cursor, Stream-Up-To-Date, Stream-Closed, Stream-TTL, "
    "Stream-Expires-At, Stream-SSE-Data-Encoding, Producer-Epoch, Producer-Seq, "
    "Producer-Expected-Seq, Producer-Received-Seq, ETag, Location"
)


@dataclass(frozen=True, slots=True)
class Context:
    hub: Hub
    config: Config
    metrics: Metrics
    refusals: Refusals
    #: the backplane's ``Streams``; None: it has none, and every route answers 501
    streams: Streams | None
    backplane: str  # its kind, for that 501
    gate: Gate | None  # None: no private channels
    publishers: Publishers
    wire: Wire
    addresses: ClientAddresses
    admission: Admission  # subscribe_rate and stream counts, for SSE and long-poll reads

    def channel(self, request: web.Request) -> str:
        """The stream's channel: the path after /v1/stream/ (400 when it is no channel name)."""
        name = check_channel(request.match_info["path"])
        if is_clock(name):
            raise InvalidInput(f"{name!r} is a clock channel: it holds no stream")
        return name

    def writer(self, request: web.Request, channel: str) -> str | None:
        """Publish auth, as ``POST /channels/{name}/events``: the token (401/403) and its scope
        (403), checked before anything of the stream is told; the token (None: loopback)."""
        token, scope = self.publishers.check(request)
        auth.check_scope(scope, channel)
        return token

    async def spend(self, request: web.Request, token: str | None, events: int) -> None:
        """The publish rate, for ``events`` events (at least one: a close or a delete counts
        as one); 429 past it."""
        await self.publishers.spend(request, token, max(1, events))

    def cache_control(self, channel: str) -> str:
        """A catch-up or long-poll page's ``Cache-Control`` (the protocol's section 10.1): a
        page after an offset never changes but for growing, so a cache may keep it a minute;
        ``private`` (the browser's cache only) for a channel that needs a grant, as the
        protocol asks of user-specific or confidential streams."""
        private = self.gate is not None and self.gate.needs_grant([channel])
        return f"{'private' if private else 'public'}, {_PAGE_CACHE}"

    async def may_read(self, request: web.Request, channel: str) -> Grant:
        """What a subscribe needs: for a private channel, a grant, ticket or token (401/403);
        when the stream must end (a grant's expiry) and the grant's ``sub`` (what presence
        tells of it, as the native route's), each None without."""
        if self.gate is None or not self.gate.needs_grant([channel]):
            return None, None
        return await self.gate.grant(request, [channel])


def headers_for(config: Config, request: web.Request) -> dict[str, str]:
    """CORS (reads: ``cors_origins``; writes: ``publish_cors_origins``) and ``SECURITY``."""
    headers = cors_headers(config, request)
    if headers:
        headers["Access-Control-Expose-Headers"] = EXPOSED
    return headers | SECURITY


def fail(
    status: int, message: str, headers: dict[str, str], extra: dict[str, str] | None = None
) -> web.Response:
    """A JSON error (``{"error": ...}``) with the answer's headers."""
    return error(status, message, headers | extra if extra else headers)


async def body_of(request: web.Request, config: Config) -> bytes:
    """The request body within ``max_body_bytes`` (413, in this dialect's words) and
    ``body_timeout`` (408)."""
    return await read_body(request, config, _too_large)


def _too_large(config: Config) -> InvalidInput:
    return InvalidInput(
        f"the body is larger than max_body_bytes ({config.max_body_bytes} bytes): append it "
        "in parts",
        413,
    )
