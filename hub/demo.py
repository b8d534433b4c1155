"""The demo job runner behind the page's "Start job" button (``demo_jobs = true``).

``POST /demo/jobs`` (no token: visitors of the page start jobs) starts a simulated long job that
analyses a synthetic data set and reports to the channel ``job/<id>``, exactly as an external
service would: each event is built by ``encode_draft`` and stored by ``Hub.publish``, so it passes
the same checks, gets an id from the backplane, is kept in history and reaches every hub process.
Nothing goes straight into the fan-out. ``examples/job_worker.py`` does the same over HTTP.

The events of a job (the page shows any publisher's job that follows them):

- ``started``: ``{"job", "title", "stages": [...], "rows"}``
- ``progress``: ``{"pct": 0-100, "stage", "stage_index", "message"}``
- ``done``: ``{"pct": 100, "result": {...}, "seconds"}``
- ``failed``: ``{"error"}`` (here only when the hub shuts down under a running job)

At most ``max_demo_jobs`` run at once; beyond that the answer is 503 with ``Retry-After``, since
the limit is the server's capacity, not something the caller did wrong. Every job is a task held
here, cancelled and awaited when the hub shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import secrets
import time
from typing import Any

import orjson
from aiohttp import web

from hub.api.responses import error, json_errors
from hub.backplane import BackplaneUnavailable, ChannelClosed, ChannelDeleted
from hub.demo_answer import add_answer_routes
from hub.events import InvalidInput, check_channel, encode_draft
from hub.grants import Gate
from hub.hub import Hub

__all__ = ["DEMO_JOBS", "DemoBusy", "DemoJobs", "add_demo_routes", "job_channel"]

log = logging.getLogger("hub.demo")

JOB_PREFIX = "job/"
STAGES = ("Download", "Parse", "Aggregate", "Report")
_DONE = {"Download": "Downloaded", "Parse": "Parsed", "Aggregate": "Aggregated"}
STEPS_PER_STAGE = 5
ROWS = 12_000  # ~13 ms of CPU a job (120,000: a few hundred jobs starved their hub for seconds)
SLICE = 2_000
REGIONS = ("Africa", "Americas", "Asia", "Europe", "Oceania")
#: Publish attempts while the backplane is unavailable (backing off up to 2 s between them).
PUBLISH_ATTEMPTS = 8
#: How long a job being cancelled at shutdown may take to say so.
FAREWELL_TIMEOUT = 1.0


def job_channel(job_id: str) -> str:
    return JOB_PREFIX + job_id


class DemoBusy(Exception):
    """``max_demo_jobs`` are running, or the hub is shutting down."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DemoJobs:
    """The running demo jobs: started on request, each a task kept until it ends."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._max_jobs = hub.config.max_demo_jobs
        self._seconds = hub.config.demo_job_seconds
        self._running: dict[str, tuple[asyncio.Task[None], float]] = {}
        self._closing = False

    @property
    def running(self) -> int:
        return len(self._running)

    def start(self) -> str:
        """Start a job and return its id; raises ``DemoBusy`` at the cap."""
        now = time.monotonic()
        if self._closing:
            raise DemoBusy("the hub is shutting down", retry_after=5)
        if len(self._running) >= self._max_jobs:
            first_end = min(started for _, started in self._running.values()) + self._seconds
            raise DemoBusy(
                f"{len(self._running)} demo jobs are running, the most this hub allows "
                f"(max_demo_jobs); try again in a few seconds",
                retry_after=max(1, math.ceil(first_end - now)),
            )
        job_id = secrets.token_hex(6)
        while job_id in self._running:  # pragma: no cover (48 random bits)
            job_id = secrets.token_hex(6)
        task = asyncio.create_task(self._run(job_id), name=f"demo job {job_id}")
        self._running[job_id] = (task, now)
        task.add_done_callback(lambda done: self._finished(job_id, done))
        return job_id

    def _finished(self, job_id: str, task: asyncio.Task[None]) -> None:
        self._running.pop(job_id, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("demo job %s failed", job_id, exc_info=task.exception())

    async def close(self) -> None:
        """Refuse new jobs, cancel the running ones and wait for them (idempotent)."""
        self._closing = True
        tasks = [task for task, _ in self._running.values()]
        for task in tasks:
            task.cancel()
        # return_exceptions: a job that failed (already logged) must not break the shutdown
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, job_id: str) -> None:
        channel = check_channel(job_channel(job_id))
        steps = len(STAGES) * STEPS_PER_STAGE
        pause = self._seconds / (steps + 1)
        started = time.monotonic()
        sequence = 0

        async def publish(event: str, data: dict[str, Any]) -> None:
            nonlocal sequence
            sequence += 1
            await self._publish(channel, f"demo {job_id} {sequence}", event, data)

        try:
            await publish(
                "started",
                {
                    "job": job_id,
                    "title": f"Analysing {ROWS:,} orders",
                    "stages": list(STAGES),
                    "rows": ROWS,
                },
            )
            analysis = _Analysis(random.Random(job_id))
            for step in range(steps):
                await asyncio.sleep(pause)
                stage_index, part = divmod(step, STEPS_PER_STAGE)
                stage = STAGES[stage_index]
                if stage == "Aggregate":  # the real work, in slices between the pauses
                    await analysis.add(ROWS * (part + 1) // STEPS_PER_STAGE - analysis.rows)
                await publish(
                    "progress",
                    {
                        "pct": 100 * (step + 1) // steps if step + 1 < steps else 99,
                        "stage": stage,
                        "stage_index": stage_index,
                        "message": _progress_message(stage, part + 1),
                    },
                )
            await asyncio.sleep(pause)
            await publish(
                "done",
                {
                    "pct": 100,
                    "result": analysis.result(),
                    "seconds": round(time.monotonic() - started, 2),
                },
            )
        except ChannelDeleted as gone:
            # Someone deleted or closed the job's channel (DELETE /channels/job/<id>, or POST
            # .../close): nobody can watch the rest.
            ended = "closed" if isinstance(gone, ChannelClosed) else "deleted"
            log.info("demo job %s stopped: its channel was %s", job_id, ended)
        except asyncio.CancelledError:
            # Tell the watchers why the job stopped, so the page does not wait forever.
            with contextlib.suppress(Exception, asyncio.CancelledError):
                async with asyncio.timeout(FAREWELL_TIMEOUT):
                    await publish("failed", {"error": "the hub shut down before the job ended"})
            raise

    async def _publish(self, channel: str, key: str, event: str, data: dict[str, Any]) -> None:
        """Publish as a service would: same draft, same store, a retry that cannot duplicate.

        The idempotency key (a namespace of its own: the routes' keys start with a digit) makes
        a retry after an unknown outcome publish at most once.
        """
        draft = encode_draft(channel, event, data, self._hub.config.max_event_bytes)
        delay = 0.1
        for attempt in range(PUBLISH_ATTEMPTS):
            try:
                await self._hub.publish([draft], key)
                return
            except BackplaneUnavailable:
                if attempt == PUBLISH_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)


def _progress_message(stage: str, part: int) -> str:
    if stage == "Report":
        return f"Report: {part} of {STEPS_PER_STAGE} sections written"
    rows = ROWS * part // STEPS_PER_STAGE
    return f"{_DONE[stage]} {rows:,} of {ROWS:,} rows"


class _Analysis:
    """The job's real (small) work: totals over a synthetic, reproducible set of orders."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self.rows = 0
        self._by_region = dict.fromkeys(REGIONS, 0.0)
        self._largest = 0.0

    async def add(self, count: int) -> None:
        """Process ``count`` more rows, yielding to the event loop every ``SLICE`` rows: the
        hub's fan-out shares this loop and must not wait behind a demo (a slice is ~2 ms)."""
        rng = self._rng
        by_region = self._by_region
        for start in range(0, count, SLICE):
            for _ in range(min(SLICE, count - start)):
                amount = round(rng.lognormvariate(3.5, 0.8), 2)
                by_region[rng.choice(REGIONS)] += amount
                if amount > self._largest:
                    self._largest = amount
            await asyncio.sleep(0)
        self.rows += count

    def result(self) -> dict[str, Any]:
        revenue = sum(self._by_region.values())
        return {
            "rows": self.rows,
            "revenue": round(revenue, 2),
            "mean_order": round(revenue / self.rows, 2) if self.rows else 0.0,
            "largest_order": self._largest,
            "top_region": max(self._by_region, key=lambda region: self._by_region[region]),
            "by_region": {region: round(total, 2) for region, total in self._by_region.items()},
        }


DEMO_JOBS = web.AppKey("demo_jobs", DemoJobs)


async def _check_empty_body(request: web.Request) -> None:
    """The button posts nothing (or ``{}``); anything else is a mistake worth saying so."""
    body = await request.read()
    if not body.strip():
        return
    if request.content_type != "application/json":
        raise InvalidInput(
            f"Content-Type must be application/json, not {request.content_type!r}", status=415
        )
    try:
        options = orjson.loads(body)
    except orjson.JSONDecodeError as problem:
        raise InvalidInput(f"the body is not valid JSON: {problem}") from None
    if not isinstance(options, dict):
        raise InvalidInput("the body must be empty or {}")
    if options:
        raise InvalidInput(f"a demo job takes no options: unknown field {sorted(options)[0]!r}")


async def start_job(request: web.Request) -> web.Response:
    jobs = request.app[DEMO_JOBS]
    await _check_empty_body(request)
    try:
        job_id = jobs.start()
    except DemoBusy as busy:
        return error(503, str(busy), {"Retry-After": str(busy.retry_after)})
    channel = job_channel(job_id)
    page = f"/jobs/{job_id}"
    answer = {
        "id": job_id,
        "channel": channel,
        "page": page,
        "events": f"/channels/{channel}/events?from=start",
    }
    return web.Response(
        status=202,
        body=orjson.dumps(answer, None, orjson.OPT_APPEND_NEWLINE),
        content_type="application/json",
        headers={"Location": page, "Cache-Control": "no-store"},
    )


def add_demo_routes(app: web.Application, hub: Hub, gate: Gate) -> None:
    """Add ``POST /demo/jobs`` (and ``POST /demo/answers``); jobs end when the hub shuts down.

    They are cancelled in ``on_shutdown``, which runs before the hub ends its streams and long
    before the backplane closes (``cleanup_ctx``): so a cancelled job can still publish its
    ``failed`` event, and watchers receive it before their stream ends.
    """
    jobs = DemoJobs(hub)
    app[DEMO_JOBS] = jobs

    async def stop_jobs(app: web.Application) -> None:
        await jobs.close()

    app.on_shutdown.append(stop_jobs)
    app.on_cleanup.append(stop_jobs)  # a no-op unless the app was cleaned up without shutdown
    app.router.add_post("/demo/jobs", json_errors(hub.config, start_job))
    add_answer_routes(app, hub, gate)  # the streamed answer (hub.demo_answer) rides along
