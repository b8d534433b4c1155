"""A ``python -m hub serve`` process for synchronous tests (hypothesis, schemathesis), on
127.0.0.1 and a free port, on either backplane, ended by its own pid.

``tests.support.processes.HubProcess`` is the asyncio twin; property-based tests run synchronously
(hypothesis drives the examples), so they get this context manager instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from tests.conftest import REDIS_URL, delete_prefix, redis_prefix
from tests.support.processes import LISTENING_RE, ROOT, clean_env, dies_with_us

__all__ = ["LiveHub", "running_hub"]


@dataclass
class LiveHub:
    url: str
    #: what the hub logged (stdout and stderr), read in the background
    lines: list[str] = field(default_factory=list)

    def tracebacks(self) -> list[str]:
        """The last line of each traceback logged: the exception and its message."""
        found, inside = [], False
        for line in self.lines:
            if line.startswith("Traceback"):
                inside = True
            elif inside and not line.startswith((" ", "\t")):
                found.append(line.rstrip())
                inside = False
        return found


@contextlib.contextmanager
def running_hub(
    backplane: str, timeout: float = 15.0, tracebacks_allowed: bool = False, **settings: str
) -> Iterator[LiveHub]:
    """Run a hub with the given backplane ("memory" or "redis") and ``HUB_*`` settings; yields
    it (its URL, its log). A Redis hub gets a fresh prefix, deleted once the hub is stopped.
    A traceback in its log fails the test unless ``tracebacks_allowed`` (the caller checks)."""
    env = {"HUB_HOST": "127.0.0.1", "HUB_PORT": "0", "HUB_LOG_LEVEL": "warning"}
    prefix = None
    if backplane == "redis":
        prefix = redis_prefix()
        env |= {"HUB_BACKPLANE": REDIS_URL, "HUB_REDIS_PREFIX": prefix}
    env |= settings
    # the start line is logged at info; ask for it whatever the level of the rest
    env["HUB_LOG_LEVEL"] = "info"
    process = subprocess.Popen(
        [sys.executable, "-m", "hub", "serve", "--config", "/dev/null"],
        cwd=ROOT,
        env=clean_env(**env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=dies_with_us,
    )
    lines: list[str] = []
    drain: threading.Thread | None = None
    try:
        assert process.stdout is not None
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        port = None
        for line in process.stdout:
            lines.append(line)
            match = LISTENING_RE.search(line)
            if match:
                port = int(match["port"])
                break
        timer.cancel()
        assert port is not None, "the hub did not start:\n" + "".join(lines)
        live = LiveHub(f"http://127.0.0.1:{port}", lines)
        # keep draining its output so a chatty hub never blocks on a full pipe
        drain = threading.Thread(target=lambda: lines.extend(process.stdout or ()), daemon=True)
        drain.start()
        yield live
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            if drain is not None:
                drain.join(5)
            process.stdout.close()
        if prefix is not None:
            asyncio.run(delete_prefix(prefix))
    assert tracebacks_allowed or not any(line.startswith("Traceback") for line in lines), (
        "the hub logged a traceback:\n" + "".join(lines[-80:])
    )
