#!/usr/bin/env python3
"""A backend job that reports its progress through ssehub, the way a real service integrates.

The service does the work; browsers watch it live on the hub, which they reach directly. The
service only makes one HTTP request per update: ``POST /channels/job/<id>/events`` with a bearer
token. It never holds a connection per viewer, and viewers who come late (or reload) still see
everything, because the hub keeps the channel's history.

Run a hub with a token, then this script::

    export SSEHUB_TOKEN=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
    HUB_PUBLISH_TOKENS=$SSEHUB_TOKEN python -m hub serve &
    python examples/job_worker.py --url http://127.0.0.1:8080

It prints the job page (``http://127.0.0.1:8080/jobs/<id>``): open it in a browser, before,
during or after the run. ``--job ID`` picks the id, ``--seconds N`` the duration. Without a
token the hub accepts publishes from loopback clients only.

The events are the ones the page understands (the hub's demo runner sends the same)::

    started   {"job", "title", "stages": [...], "rows"}
    progress  {"pct": 0-100, "stage", "stage_index", "message"}
    done      {"pct": 100, "result": {...}, "seconds"}
    failed    {"error"}

Each publish carries an ``Idempotency-Key``, so retrying after a timeout or a 503 (the hub's
backplane briefly away) never publishes an update twice. Only the standard library is used.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import secrets
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

STAGES = ("Download", "Parse", "Aggregate", "Report")
STEPS_PER_STAGE = 5
ROWS = 50_000
ATTEMPTS = 6


class PublishError(Exception):
    """The hub refused an update for good (bad token, bad event): retrying will not help."""


def publish(base: str, token: str | None, channel: str, key: str, event: str, data: Any) -> str:
    """POST one event; retries what may succeed later (network errors, 503); returns its id."""
    url = f"{base}/channels/{urllib.parse.quote(channel, safe='/:@')}/events"
    body = json.dumps({"event": event, "data": data}).encode()
    headers = {"Content-Type": "application/json", "Idempotency-Key": key}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    delay = 0.2
    for attempt in range(1, ATTEMPTS + 1):
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return str(json.load(answer)["id"])
        except urllib.error.HTTPError as problem:
            detail = problem.read().decode(errors="replace")
            if problem.code != 503 or attempt == ATTEMPTS:
                raise PublishError(f"{problem.code} from the hub: {detail}") from None
            delay = float(problem.headers.get("Retry-After") or delay)
        except (urllib.error.URLError, TimeoutError) as problem:
            if attempt == ATTEMPTS:
                raise PublishError(f"cannot reach {base}: {problem}") from None
        time.sleep(delay)
        delay = min(delay * 2, 5.0)
    raise AssertionError("unreachable")


def run(base: str, token: str | None, job_id: str, seconds: float) -> dict[str, Any]:
    """Do the (simulated) work, publishing as it goes; returns the result."""
    channel = f"job/{job_id}"
    steps = len(STAGES) * STEPS_PER_STAGE
    pause = seconds / (steps + 1)
    started = time.monotonic()
    sequence = 0

    def send(event: str, data: dict[str, Any]) -> None:
        nonlocal sequence
        sequence += 1
        # The key names the update, not the attempt: a retry of update 7 is still update 7.
        publish(base, token, channel, f"{job_id}-{sequence}", event, data)

    title = f"Summing {ROWS:,} sensor readings"
    send("started", {"job": job_id, "title": title, "stages": list(STAGES), "rows": ROWS})
    rng = random.Random(job_id)
    total = 0.0
    for step in range(steps):
        time.sleep(pause)
        stage_index, part = divmod(step, STEPS_PER_STAGE)
        if STAGES[stage_index] == "Aggregate":
            total += sum(rng.gauss(20.0, 5.0) for _ in range(ROWS // STEPS_PER_STAGE))
        send(
            "progress",
            {
                "pct": min(99, 100 * (step + 1) // steps),
                "stage": STAGES[stage_index],
                "stage_index": stage_index,
                "message": f"{STAGES[stage_index]}: part {part + 1} of {STEPS_PER_STAGE}",
            },
        )
    result = {"rows": ROWS, "mean_reading": round(total / ROWS, 3)}
    send("done", {"pct": 100, "result": result, "seconds": round(time.monotonic() - started, 2)})
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--url",
        default=os.environ.get("SSEHUB_URL", "http://127.0.0.1:8080"),
        help="the hub (default: $SSEHUB_URL or http://127.0.0.1:8080)",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("SSEHUB_TOKEN"),
        help="a publish token of the hub (default: $SSEHUB_TOKEN)",
    )
    parser.add_argument("--job", default=None, help="job id (default: a random one)")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long the job runs")
    args = parser.parse_args(argv)
    base = args.url.rstrip("/")
    job_id = args.job or secrets.token_hex(6)
    if not re.fullmatch(r"[A-Za-z0-9_.:@-]{1,100}", job_id):
        parser.error("--job: use 1-100 characters of A-Z a-z 0-9 _ . : @ -")
    print(f"job {job_id}: watch it at {base}/jobs/{job_id}", flush=True)
    try:
        result = run(base, args.token, job_id, args.seconds)
    except PublishError as problem:
        print(f"job {job_id}: {problem}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        with contextlib.suppress(PublishError):
            error = {"error": "stopped by its operator"}
            publish(base, args.token, f"job/{job_id}", f"{job_id}-stop", "failed", error)
        return 130
    print(f"job {job_id}: done: {json.dumps(result)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
