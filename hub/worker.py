"""The worker side of ``workers``: what a worker process gets from its supervisor.

``hub.supervisor`` starts each worker as ``python -m hub serve`` with the same arguments and a
few ``SSEHUB_WORKER*`` variables: its number (stable: a replacement takes the number of the
worker it replaces, so log lines and ``/healthz`` name the same slot), the port all of them
share (``SO_REUSEPORT``), the engine's socket (the backplane when it is the memory one; else the
hub-wide limits and sums: ``hub.app``), the
supervisor's pid, and a pipe to say "listening" on. A worker must not outlive its supervisor
(the engine, which holds the hub's history, lives there): it asks the kernel for SIGTERM when
the supervisor ends (``PR_SET_PDEATHSIG``), then drains like a single hub does. This module
imports nothing of the hub: the command line and the engine's proxy both read it.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import signal
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hub.config import Config

__all__ = [
    "ENGINE_ENV",
    "NUMBER_ENV",
    "as_worker",
    "coordinator",
    "die_with_supervisor",
    "number",
    "ready",
]

NUMBER_ENV = "SSEHUB_WORKER"
COUNT_ENV = "SSEHUB_WORKER_COUNT"
PORT_ENV = "SSEHUB_WORKER_PORT"
ENGINE_ENV = "SSEHUB_WORKER_ENGINE"
SUPERVISOR_ENV = "SSEHUB_WORKER_SUPERVISOR"
READY_ENV = "SSEHUB_WORKER_READY_FD"
_PR_SET_PDEATHSIG = 1


def number() -> int:
    """This worker's number (1..N), or 0 for a hub that is no supervisor's worker."""
    text = os.environ.get(NUMBER_ENV, "")
    return int(text) if text.isdigit() else 0


def count() -> int:
    text = os.environ.get(COUNT_ENV, "")
    return int(text) if text.isdigit() else 1


def coordinator() -> str | None:
    """The socket of the supervisor's engine (with Redis or NATS, its coordination part: the
    hub-wide limits and sums); None for a hub that is no supervisor's worker."""
    return os.environ.get(ENGINE_ENV) or None


def as_worker(config: Config) -> Config:
    """The worker's settings: its supervisor's, on the shared port, one process, and through
    the engine when the backplane is the memory one."""
    changes: dict[str, object] = {"workers": 1, "port": int(os.environ[PORT_ENV])}
    engine = os.environ.get(ENGINE_ENV)
    if engine and config.backplane == "memory":
        changes["backplane"] = f"engine+unix://{engine}"
    return dataclasses.replace(config, **changes)  # type: ignore[arg-type]


def die_with_supervisor() -> None:
    """SIGTERM from the kernel when the supervisor ends, however it ends; and if it ended
    before this line ran, end now."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    supervisor = os.environ.get(SUPERVISOR_ENV, "")
    if supervisor.isdigit() and os.getppid() != int(supervisor):
        raise SystemExit("ssehub: worker: the supervisor is gone")


def ready() -> None:
    """Tell the supervisor this worker listens (one byte on its pipe, then closed)."""
    text = os.environ.pop(READY_ENV, "")
    if text.isdigit():
        fd = int(text)
        try:
            os.write(fd, b"1")
        finally:
            os.close(fd)
