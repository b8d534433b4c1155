"""Subscribers whose network vanishes: no FIN, no RST, just silence, as when a phone leaves
the Wi-Fi. Only inside a private network namespace (``unshare -n``, root), where the soak
runs with its own loopback: an iptables rule there drops every packet of one connection both
ways, and ``ss`` tells when the hub has released its end. The host's network is never touched.
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from dataclasses import dataclass, field

from bench.soak_fleet import HubFleet

__all__ = ["Vanished", "vanishing_subscriber"]


@dataclass
class Vanished:
    count: int = 0
    released: list[float] = field(default_factory=list)  # seconds from vanishing to release
    by_kill: int = 0  # their hub was SIGKILLed before it noticed

    def line(self) -> str:
        if not self.count:
            return "dead subscribers (network vanished): not run (needs root and unshare)"
        times = sorted(self.released)
        span = ""
        if times:
            span = f", after {times[0]:.0f}-{times[-1]:.0f} s (median {times[len(times) // 2]:.0f})"
        return (
            f"dead subscribers (network vanished) released: {len(times)} of {self.count}{span}"
            + (f"; {self.by_kill} ended by a hub SIGKILL first" if self.by_kill else "")
        )


async def _run(*command: str) -> str:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await process.communicate()
    if process.returncode:
        raise RuntimeError(f"{' '.join(command)}: {out.decode()}")
    return out.decode()


async def vanishing_subscriber(
    path: str, fleet: HubFleet, vanished: Vanished, deadline_s: float
) -> None:
    """Subscribe, read for a while, vanish, and time how long the hub takes to let go."""
    loop = asyncio.get_running_loop()
    index = random.randrange(len(fleet.servers))
    port = fleet.servers[index].port
    incarnation = fleet.incarnation[index]
    sock = socket.socket()
    sock.setblocking(False)
    deadline = time.monotonic() + deadline_s
    try:
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, f"GET {path} HTTP/1.1\r\nHost: soak\r\n\r\n".encode())
        mine = sock.getsockname()[1]
        reading_until = time.monotonic() + random.uniform(3, 15)
        while time.monotonic() < reading_until:
            async with asyncio.timeout(10):
                if not await loop.sock_recv(sock, 1 << 16):
                    return  # ended before it could vanish (a hub kill): nothing to time
        for chain, side in (("INPUT", "--dport"), ("OUTPUT", "--sport")):
            await _run("iptables", "-I", chain, "-p", "tcp", side, str(mine), "-j", "DROP")
        vanished.count += 1
        gone_at = time.monotonic()
        query = ["ss", "-tnH", "state", "all", "src", f"127.0.0.1:{port}",
                 "dst", f"127.0.0.1:{mine}"]  # fmt: skip
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            if fleet.incarnation[index] != incarnation:
                vanished.by_kill += 1
                return
            if not (await _run(*query)).strip():
                vanished.released.append(time.monotonic() - gone_at)
                return
    except (OSError, TimeoutError):
        return
    finally:
        sock.close()
