"""Webhooks: ``channel.occupied`` / ``channel.vacated``, hub-wide, after ``webhook_grace``.

The hub POSTs ``{"type", "channel", "at"}`` to ``webhook_url`` when a channel gets its first
subscriber or loses its last one on every process taken together, signed with
``X-Ssehub-Signature: sha256=<hex HMAC-SHA256 of the body with webhook_secret>``.

Which process sends it, without a leader: the one whose *own* change made the hub-wide count
cross zero, judged with the counts the backplane's ``Presence`` shares (a few seconds old; one
process alone knows them exactly):

- occupied: this process's first subscriber of C came while the others had none of C; sent
  once ``webhook_grace`` later if C still has subscribers here;
- vacated: this process's last subscriber of C left; sent ``webhook_grace`` later if C still
  has none here and the others have none either.

A subscriber back within the grace (a reconnect) cancels what its leave or join scheduled, so
nothing flaps. The edge cases, from the counts' age (``COUNTS_INTERVAL``, 2 s, shared every
interval and read every interval: up to about 4 s old): two processes whose first subscribers
come within a few seconds of each other may both send occupied, and two whose last ones leave
within a few seconds may both send vacated; a receiver treats a repeated state as a no-op. A
vacated is not lost while ``webhook_grace`` is at least twice the counts interval (the default,
5 s): the process whose subscribers left last sees the others' zeros by then. A channel whose
first subscriber on one process left within the grace while another process had joined (it saw
the first one's count) gets no occupied; its vacated comes as usual.

Sending never slows delivery: the webhook queue is bounded (``QUEUE``; a webhook that finds it
full is dropped and counted), and one task posts them in order, each retried with backoff
(``ATTEMPTS``, from ``BACKOFF`` s doubling) on a refused connection, a timeout or a non-2xx
answer. Failures are counted in /metrics and logged with the channel escaped; the secret is
never logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

import aiohttp
import orjson

from hub.metrics import Metrics

__all__ = ["ATTEMPTS", "BACKOFF", "QUEUE", "SIGNATURE_HEADER", "Webhooks", "signature"]

log = logging.getLogger("hub.webhooks")

OCCUPIED = "channel.occupied"
VACATED = "channel.vacated"

SIGNATURE_HEADER = "X-Ssehub-Signature"
#: Webhooks waiting to be sent at most; more are dropped (and counted).
QUEUE = 1000
#: Tries of one webhook, and the first wait between two (doubling, at most ``_MAX_WAIT``).
ATTEMPTS = 6
BACKOFF = 0.5
_MAX_WAIT = 30.0
#: Seconds one POST may take.
_TIMEOUT = 10.0
#: Seconds between looks at what is due.
_TICK = 0.1


def signature(secret: str, body: bytes) -> str:
    """The header's value: ``sha256=`` and the hex HMAC-SHA256 of ``body`` keyed by ``secret``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Webhooks:
    """Decides what to send (``opened``/``closed`` of this process's channels) and sends it."""

    def __init__(
        self,
        url: str,
        secret: str,
        grace: float,
        local: Callable[[str], bool],
        remote: Callable[[str], int],
        metrics: Metrics,
    ) -> None:
        self._url = url
        self._secret = secret
        self._grace = grace
        self._local = local  # whether this process has subscribers of a channel
        self._remote = remote  # the other processes' subscribers of it
        self._metrics = metrics
        #: channel -> (type, due (monotonic), when it happened (time.time()))
        self._due: dict[str, tuple[str, float, float]] = {}
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE)

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def opened(self, name: str) -> None:
        """This process's first subscriber of ``name``."""
        due = self._due.pop(name, None)
        if due is not None and due[0] == VACATED:
            return  # back within the grace: nothing happened
        if self._remote(name) == 0:
            self._due[name] = (OCCUPIED, time.monotonic() + self._grace, time.time())

    def closed(self, name: str) -> None:
        """This process's last subscriber of ``name`` left."""
        due = self._due.pop(name, None)
        if due is not None and due[0] == OCCUPIED:
            return  # came and went within the grace
        self._due[name] = (VACATED, time.monotonic() + self._grace, time.time())

    async def decide_forever(self) -> None:
        while True:
            await asyncio.sleep(_TICK)
            if self._due:
                self.decide(time.monotonic())

    def decide(self, now: float) -> None:
        for name, (kind, due, at) in list(self._due.items()):
            if due > now:
                continue
            del self._due[name]
            if self._local(name) if kind == OCCUPIED else self._vacant(name):
                self._enqueue(kind, name, at)

    def _vacant(self, name: str) -> bool:
        return not self._local(name) and self._remote(name) == 0

    def _enqueue(self, kind: str, name: str, at: float) -> None:
        stamp = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")
        body = orjson.dumps({"type": kind, "channel": name, "at": stamp.replace("+00:00", "Z")})
        try:
            self._queue.put_nowait(body)
        except asyncio.QueueFull:
            self._metrics.webhooks_dropped += 1
            log.warning("webhook %s of %r dropped: %d are waiting already", kind, name, QUEUE,
                        extra={"event": "webhook-dropped"})  # fmt: skip

    async def send_forever(self) -> None:
        """Post the queued webhooks in order, each with its retries (never the delivery's)."""
        timeout = aiohttp.ClientTimeout(total=_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                body = await self._queue.get()
                await self._send(session, body)

    async def _send(self, session: aiohttp.ClientSession, body: bytes) -> None:
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature(self._secret, body),
            "User-Agent": "ssehub-webhooks",
        }
        wait = BACKOFF
        for attempt in range(1, ATTEMPTS + 1):
            try:
                async with session.post(self._url, data=body, headers=headers) as answer:
                    await answer.read()
                    if 200 <= answer.status < 300:
                        self._metrics.webhooks_sent += 1
                        return
                    why = f"answered {answer.status}"
            except (aiohttp.ClientError, TimeoutError, OSError) as problem:
                why = type(problem).__name__
            self._metrics.webhook_failures += 1
            if attempt < ATTEMPTS:
                log.info("webhook %s failed (%s), try %d of %d", _shown(body), why, attempt,
                         ATTEMPTS, extra={"event": "webhook-retry"})  # fmt: skip
                await asyncio.sleep(wait)
                wait = min(wait * 2, _MAX_WAIT)
        self._metrics.webhooks_dropped += 1
        log.warning("webhook %s given up after %d tries (%s)", _shown(body), ATTEMPTS, why,
                    extra={"event": "webhook-dropped"})  # fmt: skip


def _shown(body: bytes) -> str:
    """The webhook for a log line: its type and channel, escaped (``%r``)."""
    sent = orjson.loads(body)
    return f"{sent['type']} of {sent['channel']!r}"
