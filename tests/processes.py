"""Real hub processes (``python -m hub serve``) for tests that need several, or a real CLI."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_LISTENING = re.compile(r"listening on http://([\d.]+):(\d+)")


class HubProcess:
    """A hub started on 127.0.0.1 with port 0; ``url`` is known once it logged that it listens."""

    def __init__(self, settings: Mapping[str, str], args: tuple[str, ...] = ()) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        env |= {"HUB_HOST": "127.0.0.1", "HUB_PORT": "0", **settings}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hub", "serve", *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._listening = threading.Event()
        self.url = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        with self.process.stdout:  # closed at EOF, i.e. when the process has exited
            for line in self.process.stdout:
                self.lines.append(line.rstrip("\n"))
                found = _LISTENING.search(line)
                if found and not self.url:
                    self.url = f"http://{found.group(1)}:{found.group(2)}"
                    self._listening.set()

    def wait_listening(self, timeout: float = 15.0) -> str:
        if not self._listening.wait(timeout):
            self.stop()
            raise AssertionError("the hub did not start:\n" + "\n".join(self.lines))
        return self.url

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def signal(self, signum: int) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signum)

    def wait(self, timeout: float = 10.0) -> int:
        started = time.monotonic()
        code = self.process.wait(timeout)
        self._reader.join(max(0.1, timeout - (time.monotonic() - started)))
        return code

    def stop(self) -> None:
        """End it (SIGTERM, then SIGKILL if it hangs); safe to call twice."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._reader.join(5)
