"""The "resumable stream" demo: a long answer streamed token by token (``demo_jobs = true``).

The most common use of SSE today is an LLM or agent answer that arrives in small pieces and
must survive a dropped connection or a reload. ``POST /demo/answers`` starts one: a canned
text, split into tokens, published to ``answer/<id>`` as one small event each, over about
``demo_job_seconds``. It is a plug-in of the demo (loaded by ``hub.demo``), publishing through
``Hub.publish`` like any service, so each token gets an id and a place in the history.

Events:

- ``token``: ``{"i": <0-based index>, "t": "<text, with its trailing space>"}``
- ``end``: ``{"tokens": <count>}``, after which the channel is closed (``Hub.close_channel``):
  every stream on it gets ``event: close`` and ends, so ``curl`` on an answer's stream ends
  with the answer, and its history stays readable until ``history_ttl``.

A client rebuilds the answer from ``?from=start`` (or ``replay=answer/<id>`` on a shared
stream) and, after a dropped connection, resumes with ``Last-Event-ID``: the hub replays
exactly the tokens after it, so nothing is lost or doubled. The index lets a client check it.
The answers share the demo jobs' limit (``max_demo_jobs`` running at once).

An answer is someone's own data, so where ``private_channels`` covers ``answer/*`` (as in the
shipped ``config.toml``) its channel needs a grant. ``POST /demo/answers/<id>/tickets`` then
plays the part of the service's own backend: it hands out one-time tickets for the answer's
channel, and the id (128 random bits, known only to whoever started the answer) is what it
checks, where a real backend would check its user's session; only for an answer that was
started (here, or on another process: then its history says so), at most ``ticket_rate`` a
second per address and ``max_publisher_tickets`` waiting per answer (``hub.ticket_quota``).
The page opens each stream with a new ticket, as ``web/js/private.js`` does, on a reload too.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time

import orjson
from aiohttp import web

from hub.api.private import DEFAULT_TICKET_TTL, ticket_response
from hub.api.responses import answer, error, json_errors
from hub.backplane import BackplaneUnavailable, ChannelClosed, ChannelDeleted
from hub.clients import ClientAddresses
from hub.events import check_channel, encode_draft
from hub.grants import Gate
from hub.hub import Hub
from hub.ticket_quota import TooManyTickets

__all__ = ["ANSWER_ID_RE", "ANSWER_TEXT", "add_answer_routes", "answer_channel", "tokens"]

ANSWER_PREFIX = "answer/"
ANSWER_TEXT = (
    "Server-Sent Events are a good fit for a streamed answer. The server sends each token as "
    "a small event with an id, in order, over one long HTTP response, and the browser's "
    "EventSource keeps the last id it saw. When the connection drops, the browser reconnects "
    "by itself and sends that id in the Last-Event-ID header; the hub replays every event "
    "after it, from its history, then goes on live, so the answer continues exactly where it "
    "was: no token is lost, and none arrives twice. A page that is reloaded has no last id of "
    "its own, so it asks for the channel's history from the start instead and rebuilds the "
    "text it had, then follows the rest live. The same works on a phone that walks into a "
    "tunnel, behind a proxy that cuts idle connections, or on a hub that restarts behind a "
    "load balancer, as long as the history keeps the answer's events: here a thousand events "
    "per channel, kept for an hour. Keep the events small, give each one its index, and let "
    "the client check that every index arrives once, in order. That is the whole recipe."
)
#: A word with what follows it (spaces, punctuation): joined, the tokens are the text again.
_TOKEN_RE = re.compile(r"\S+\s*")
#: An answer's id: 16 random bytes in hex, the capability ``/tickets`` checks.
ANSWER_ID_RE = re.compile(r"[0-9a-f]{32}")

log = logging.getLogger("hub.demo")
_PUBLISH_ATTEMPTS = 8


def answer_channel(answer_id: str) -> str:
    return ANSWER_PREFIX + answer_id


def tokens(text: str = ANSWER_TEXT) -> list[str]:
    return _TOKEN_RE.findall(text)


class _Answers:
    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._running: dict[str, asyncio.Task[None]] = {}
        #: answers started here -> when their history is gone (monotonic): those may be ticketed
        self._started: dict[str, float] = {}
        self._closing = False

    def start(self) -> str | None:
        """The new answer's id; None at the cap or while shutting down."""
        if self._closing or len(self._running) >= self._hub.config.max_demo_jobs:
            return None
        answer_id = secrets.token_hex(16)
        now = time.monotonic()
        self._started = {k: gone for k, gone in self._started.items() if gone > now}
        # its last event is kept history_ttl after it is published, at most demo_job_seconds on
        self._started[answer_id] = (
            now + self._hub.config.demo_job_seconds * 2 + (self._hub.config.history_ttl)
        )
        task = asyncio.create_task(self._run(answer_id), name=f"demo answer {answer_id}")
        self._running[answer_id] = task
        task.add_done_callback(lambda _: self._running.pop(answer_id, None))
        return answer_id

    async def exists(self, answer_id: str) -> bool:
        """Started here (and its history may still be kept), or, for one another hub process
        started, with history in the backplane: only those get tickets."""
        if self._started.get(answer_id, 0.0) > time.monotonic():
            return True
        page = await self._hub.history([answer_channel(answer_id)], None, 1)
        return bool(page.events)

    async def close(self) -> None:
        self._closing = True
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, answer_id: str) -> None:
        channel = check_channel(answer_channel(answer_id))
        pieces = tokens()
        pause = self._hub.config.demo_job_seconds / (len(pieces) + 1)
        try:
            for index, piece in enumerate(pieces):
                await asyncio.sleep(pause)
                await self._publish(
                    channel, f"answer {answer_id} {index}", "token", {"i": index, "t": piece}
                )
            await self._publish(channel, f"answer {answer_id} end", "end", {"tokens": len(pieces)})
            await self._hub.close_channel(channel)
        except ChannelDeleted as gone:
            # DELETE (its streams were closed: nobody can read the rest) or POST .../close
            ended = "closed" if isinstance(gone, ChannelClosed) else "deleted"
            log.info("demo answer %s stopped: its channel was %s", answer_id, ended)
        except BackplaneUnavailable as problem:
            log.warning("demo answer %s stopped: %s", answer_id, problem)

    async def _publish(self, channel: str, key: str, event: str, data: object) -> None:
        """As a service would: the idempotency key makes a retry publish at most once."""
        draft = encode_draft(channel, event, data, self._hub.config.max_event_bytes)
        delay = 0.1
        for attempt in range(_PUBLISH_ATTEMPTS):
            try:
                await self._hub.publish([draft], key)
                return
            except BackplaneUnavailable:
                if attempt == _PUBLISH_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)


ANSWERS = web.AppKey("demo_answers", _Answers)


def add_answer_routes(app: web.Application, hub: Hub, gate: Gate) -> None:
    """Add ``POST /demo/answers`` and ``POST /demo/answers/{id}/tickets``; the answers are
    cancelled when the hub shuts down."""
    answers = _Answers(hub)
    app[ANSWERS] = answers
    addresses = ClientAddresses(hub.config.trusted_proxies)

    async def start_answer(request: web.Request) -> web.Response:
        answer_id = answers.start()
        if answer_id is None:
            return error(
                503, "the demo is at its limit (max_demo_jobs) or stopping; try again soon",
                {"Retry-After": "5"},
            )  # fmt: skip
        channel = answer_channel(answer_id)
        started = {
            "id": answer_id,
            "channel": channel,
            "tokens": len(tokens()),
            "private": gate.is_private(channel),
            "events": f"/channels/{channel}/events?from=start",
            "tickets": f"/demo/answers/{answer_id}/tickets",
        }
        return web.Response(
            status=202,
            body=orjson.dumps(started, None, orjson.OPT_APPEND_NEWLINE),
            content_type="application/json",
            headers={"Cache-Control": "no-store"},
        )

    async def answer_ticket(request: web.Request) -> web.Response:
        answer_id = request.match_info["id"]
        if not ANSWER_ID_RE.fullmatch(answer_id):
            return error(404, "no such answer: an answer id is 32 hex digits")
        try:
            # rate per address first: the existence check may read the backplane
            await gate.ticket_quota.claim(f"answer:{answer_id}", DEFAULT_TICKET_TTL,
                                          rate_key=f"address:{addresses.of(request)}")  # fmt: skip
            if not await answers.exists(answer_id):
                return error(404, f"no answer {answer_id}: it was never started, or is gone")
        except TooManyTickets as problem:
            return answer(problem, problem.headers)
        except BackplaneUnavailable as problem:
            return error(503, f"no ticket issued: {problem}", {"Retry-After": "1"})
        channels = [answer_channel(answer_id)]
        return await ticket_response(gate.tickets, channels, DEFAULT_TICKET_TTL, {})

    async def stop(app: web.Application) -> None:
        await answers.close()

    app.on_shutdown.append(stop)
    app.on_cleanup.append(stop)
    app.router.add_post("/demo/answers", json_errors(hub.config, start_answer))
    app.router.add_post("/demo/answers/{id}/tickets", json_errors(hub.config, answer_ticket))
