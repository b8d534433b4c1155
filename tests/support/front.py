"""``scripts/h2-front`` as a user runs it: nginx with HTTPS + HTTP/2 in front of a hub process.

Started on a free 127.0.0.1 port and stopped by SIGTERM to its own pid, as documented.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

from tests.support.processes import ROOT, clean_env, dies_with_us

__all__ = ["Front", "client_tls", "run_front"]

SCRIPT = ROOT / "scripts" / "h2-front"


def client_tls() -> ssl.SSLContext:
    """The front's certificate is self-signed: encrypt, but trust it without checking."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    return context


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Front:
    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.port = port
        self.url = f"https://127.0.0.1:{port}"


@contextlib.asynccontextmanager
async def run_front(upstream: str, config: Path | None = None) -> AsyncIterator[Front]:
    """Start the front on a free port before ``upstream``; stop it (SIGTERM) on leaving."""
    port = _free_port()
    extra = [] if config is None else ["--config", str(config)]
    process = await asyncio.create_subprocess_exec(
        str(SCRIPT), "--listen", f"127.0.0.1:{port}", "--upstream", upstream, *extra,
        env=clean_env(),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=dies_with_us,
    )  # fmt: skip
    try:
        async with asyncio.timeout(20):
            while True:
                if process.returncode is not None:
                    assert process.stderr is not None
                    raise AssertionError(f"h2-front exited: {(await process.stderr.read())!r}")
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    await asyncio.sleep(0.1)
                    continue
                writer.close()
                await writer.wait_closed()
                break
        yield Front(process, port)
    finally:
        if process.returncode is None:
            process.terminate()
        try:
            async with asyncio.timeout(10):
                await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()
