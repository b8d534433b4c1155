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

``--stream`` sends the updates as lines of one ``POST /publish/stream`` request instead (for a
job that reports a lot: ``--steps 10000``), and reads the receipts on a second thread as they
come back, so the hub's back-pressure never deadlocks the two directions. Streamed lines carry
no idempotency key: a stream cut off midway is reported, not retried.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import secrets
import socket
import sys
import threading
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


class Stream:
    """One ``POST /publish/stream`` request: ``send`` writes a line, a thread reads receipts."""

    def __init__(self, base: str, token: str | None) -> None:
        url = urllib.parse.urlsplit(base)
        if url.scheme != "http":
            raise PublishError("--stream speaks plain http:// (put TLS in front, or drop it)")
        self._sock = socket.create_connection((url.hostname, url.port or 80), timeout=30)
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        head = (
            f"POST {url.path.rstrip('/')}/publish/stream HTTP/1.1\r\nHost: {url.netloc}\r\n"
            f"Content-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n{auth}\r\n"
        )
        self._sock.sendall(head.encode())
        self.receipts = 0
        self.errors: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def send(self, event: str, data: Any, channel: str) -> None:
        line = json.dumps({"channel": channel, "event": event, "data": data}).encode() + b"\n"
        self._sock.sendall(b"%x\r\n%s\r\n" % (len(line), line))

    def close(self) -> None:
        """End the body, wait for the last receipt; raises PublishError if a line was refused."""
        self._sock.sendall(b"0\r\n\r\n")
        self._reader.join(60)
        self._sock.close()
        if self.errors:
            raise PublishError(f"{len(self.errors)} update(s) refused, first: {self.errors[0]}")

    def _read(self) -> None:
        answer = self._sock.makefile("rb")
        status = answer.readline().decode(errors="replace").strip()
        while answer.readline() not in (b"\r\n", b""):
            pass  # the headers
        if " 200 " not in f"{status} ":
            self.errors.append(f"{status}: {answer.read(2000).decode(errors='replace')}")
            return
        tail = b""
        while size := int(answer.readline().strip() or b"0", 16):  # chunked: size, data
            lines = (tail + answer.read(size)).split(b"\n")
            answer.readline()
            tail = lines.pop()
            for line in lines:
                if line.startswith(b'{"line"'):
                    self.errors.append(line.decode())
                else:
                    self.receipts += 1


def run(
    base: str,
    token: str | None,
    job_id: str,
    seconds: float,
    steps: int = len(STAGES) * STEPS_PER_STAGE,
    streamed: bool = False,
) -> dict[str, Any]:
    """Do the (simulated) work, publishing as it goes; returns the result."""
    channel = f"job/{job_id}"
    per_stage = max(1, steps // len(STAGES))
    steps = per_stage * len(STAGES)
    pause = seconds / (steps + 1)
    started = time.monotonic()
    sequence = 0
    stream = Stream(base, token) if streamed else None

    def send(event: str, data: dict[str, Any]) -> None:
        nonlocal sequence
        sequence += 1
        if stream is not None:
            stream.send(event, data, channel)
            return
        # The key names the update, not the attempt: a retry of update 7 is still update 7.
        publish(base, token, channel, f"{job_id}-{sequence}", event, data)

    title = f"Summing {ROWS:,} sensor readings"
    send("started", {"job": job_id, "title": title, "stages": list(STAGES), "rows": ROWS})
    rng = random.Random(job_id)
    total = 0.0
    for step in range(steps):
        time.sleep(pause)
        stage_index, part = divmod(step, per_stage)
        if STAGES[stage_index] == "Aggregate":
            total += sum(rng.gauss(20.0, 5.0) for _ in range(ROWS // per_stage))
        send(
            "progress",
            {
                "pct": min(99, 100 * (step + 1) // steps),
                "stage": STAGES[stage_index],
                "stage_index": stage_index,
                "message": f"{STAGES[stage_index]}: part {part + 1} of {per_stage}",
            },
        )
    result = {"rows": ROWS, "mean_reading": round(total / ROWS, 3)}
    send("done", {"pct": 100, "result": result, "seconds": round(time.monotonic() - started, 2)})
    if stream is not None:
        stream.close()
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
    parser.add_argument("--steps", type=int, default=20, help="progress updates (default 20)")
    parser.add_argument(
        "--stream", action="store_true", help="send every update on one POST /publish/stream"
    )
    args = parser.parse_args(argv)
    base = args.url.rstrip("/")
    job_id = args.job or secrets.token_hex(6)
    if not re.fullmatch(r"[A-Za-z0-9_.:@-]{1,100}", job_id):
        parser.error("--job: use 1-100 characters of A-Z a-z 0-9 _ . : @ -")
    print(f"job {job_id}: watch it at {base}/jobs/{job_id}", flush=True)
    try:
        result = run(base, args.token, job_id, args.seconds, args.steps, args.stream)
    except (PublishError, OSError) as problem:
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
