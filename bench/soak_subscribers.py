"""The soak's subscribers: readers that drop and resume with ``Last-Event-ID`` (some slowly),
and never-readers with a tiny receive window, which the hub must cut off.

A reader checks every frame against what it saw before (across its reconnections): a payload
key seen twice is a duplicate, a position not above the last one on its channel a reorder; at
the end, what it misses of its channels' accepted events is its share of "lost".
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections import defaultdict

import aiohttp
import orjson

from bench.soak_clients import Figures, Ledger
from bench.soak_fleet import HubFleet

__all__ = ["subscriber"]


class _Reader:
    """What one subscriber has seen, across all its connections."""

    def __init__(self, channels: list[str], figures: Figures) -> None:
        self.channels = channels
        self.figures = figures
        self.seen: set[int] = set()
        self.count: dict[str, int] = defaultdict(int)
        self.last_position: dict[str, int] = defaultdict(int)
        self.last_id: str | None = None
        self.last_data = time.monotonic()
        self._buffer = b""

    def new_connection(self) -> None:
        """A frame cut off by the end of a connection is dropped, as an EventSource does."""
        self._buffer = b""

    def feed(self, chunk: bytes) -> None:
        self._buffer += chunk
        *frames, self._buffer = self._buffer.split(b"\n\n")
        for frame in frames:
            fields: dict[bytes, bytes] = {}
            for line in frame.split(b"\n"):
                name, _, value = line.partition(b": ")
                fields[name] = value
            if fields.get(b"event") == b"reset":
                self.figures.resets += 1
                self.seen.clear()
                self.count.clear()
                self.last_position.clear()
                continue
            if b"id" not in fields or b"data" not in fields:
                continue
            event_id = fields[b"id"].decode()
            position, _, channel = event_id.partition(":")
            key = orjson.loads(fields[b"data"])["k"]
            self.figures.delivered += 1
            self.last_id = event_id
            self.last_data = time.monotonic()
            if key in self.seen:
                self.figures.duplicated += 1
                continue
            self.seen.add(key)
            self.count[channel] += 1
            if int(position) <= self.last_position[channel]:
                self.figures.reordered += 1
            self.last_position[channel] = max(self.last_position[channel], int(position))

    def caught_up(self, ledger: Ledger) -> bool:
        return all(self.count[c] >= len(ledger.accepted[c]) for c in self.channels)

    def missing(self, ledger: Ledger) -> int:
        return sum(len(ledger.accepted[c].keys() - self.seen) for c in self.channels)

    def gaps(self, ledger: Ledger) -> str:
        """Where the missing events are: below the last position seen on their channel (a
        gap: skipped) or above it (the stream stalled or ended before them)."""
        below = above = 0
        for c in self.channels:
            for key, position in ledger.accepted[c].items():
                if key not in self.seen:
                    if position < self.last_position[c]:
                        below += 1
                    else:
                        above += 1
        detail = [
            f"{key} on {c} at {position}: {ledger.how.get(key)}"
            for c in self.channels
            for key, position in ledger.accepted[c].items()
            if key not in self.seen
        ][:5]
        return (
            f"{below} inside the stream (skipped), {above} after its last event "
            f"[{'; '.join(detail)}]"
        )


def _path(channels: list[str]) -> str:
    if len(channels) == 1:
        return f"/channels/{channels[0]}/events"
    return "/events?" + "&".join(f"channel={c}" for c in channels)


async def _never_read(path: str, fleet: HubFleet, figures: Figures, done: asyncio.Event) -> None:
    """Connect with a tiny receive window, read the head, then never read again; at the end,
    see whether the hub cut it off (it should, past max_pending_bytes)."""
    figures.never_readers += 1
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    try:
        port = int(random.choice(fleet.urls()).rsplit(":", 1)[1])
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, f"GET {path} HTTP/1.1\r\nHost: soak\r\n\r\n".encode())
        await done.wait()
        async with asyncio.timeout(20):
            while await loop.sock_recv(sock, 1 << 20):
                pass
        figures.never_released += 1
    except (ConnectionResetError, BrokenPipeError):
        figures.never_released += 1
    except (OSError, TimeoutError):
        pass
    finally:
        sock.close()


async def subscriber(
    number: int, kind: str, channels: list[str], fleet: HubFleet, ledger: Ledger,
    figures: Figures, done: asyncio.Event, deadline_s: float,
) -> None:  # fmt: skip
    """Read (``slow``: with pauses), drop at random points, resume with Last-Event-ID; after
    the publishers stop, stay until every accepted event of its channels is in."""
    mine = random.sample(channels, 1 if kind == "single" else random.randint(2, 4))
    if kind == "never":
        await _never_read(_path(channels), fleet, figures, done)
        return
    figures.readers += 1
    reader = _Reader(mine, figures)
    deadline = time.monotonic() + deadline_s
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=3, sock_read=15)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        url = ""
        while time.monotonic() < deadline and not (done.is_set() and reader.caught_up(ledger)):
            url = random.choice(fleet.urls()) + _path(mine)
            headers = {}
            if reader.last_id is None:
                # Until it has an id to resume from, every connection asks for all history: a
                # stream that ended before its first event must not make the next one live-only
                # (that would skip what was published in between: a loss of this client's own).
                url += ("&" if "?" in url else "?") + "from=start"
            else:
                headers["Last-Event-ID"] = reader.last_id
            lifetime = time.monotonic() + random.uniform(0.5, 10.0)
            reader.new_connection()
            try:
                async with session.get(url, headers=headers) as response:
                    while True:
                        chunk = await response.content.readany()
                        if not chunk:
                            break
                        reader.feed(chunk)
                        if kind == "slow":
                            await asyncio.sleep(random.uniform(0.02, 0.2))
                        if done.is_set():
                            if reader.caught_up(ledger) or time.monotonic() > deadline:
                                break
                        elif time.monotonic() > lifetime:
                            break  # drop at a random point, mid-stream
            except (aiohttp.ClientError, TimeoutError, OSError):
                pass
            figures.reconnects += 1
            await asyncio.sleep(random.uniform(0.0, 1.0))
    figures.reconnects -= 1  # the last loop's was not one
    missing = reader.missing(ledger)
    figures.missing.append(missing)
    if missing:
        print(
            f"subscriber {number} ({kind}, {mine}) misses {missing} events: "
            f"{reader.gaps(ledger)}; last id {reader.last_id}; last on {url.split('/')[2]}, "
            f"its last event {time.monotonic() - reader.last_data:.0f} s before the end",
            flush=True,
        )
