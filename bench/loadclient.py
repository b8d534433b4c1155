"""Low-overhead SSE load client and fixed-rate publisher for the ssehub benchmarks.

Why raw ``asyncio.Protocol`` connections: a full HTTP client per subscriber costs
more CPU per event than the servers we measure, so with 10k subscribers the
client, not the server, would set the figures. Here one subscriber is one
protocol object: it decodes ``Transfer-Encoding: chunked`` incrementally, splits
SSE frames on LF, CR or CRLF, looks only at ``data:`` lines and parses the
payload with orjson. Every event the benchmark publishes carries
``{"c": <channel index>, "s": <seq>, "t": <time.time_ns()>}`` (plus ``"w": 1``
during warm-up and optional ``"p"`` padding), which is enough to count missing,
duplicated and reordered events exactly and to measure publish→receive latency.

The publisher runs in its own process (``python bench/loadclient.py publish ...``)
so that a saturated subscriber loop cannot slow the publishing rate down; it
posts on one keep-alive connection, pipelining on schedule instead of waiting for
each answer, and prints JSON lines (``measure_start``, then ``done``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import math
import resource
import socket
import struct
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, cast

import orjson

__all__ = [
    "Api",
    "Histogram",
    "HttpConnection",
    "PoolReport",
    "SseSubscriber",
    "StreamAnswer",
    "SubscriberPool",
    "install_uvloop",
    "raise_nofile_limit",
]

Api = Literal["hub", "nchan"]

_CRLF2 = b"\r\n\r\n"
_log = math.log
_LINGER_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close with RST


def install_uvloop() -> bool:
    """Use uvloop when importable: its read path costs less per event than asyncio's."""
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def raise_nofile_limit() -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard one; 15k sockets need it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


class Histogram:
    """Latency histogram in log buckets (1 % wide) from 1 µs to ~10 min.

    Why not a list of samples: 10k subscribers x 50 ev/s is millions of values per
    scenario. A fixed array of counts keeps every observation (exact count, exact
    max) in ~2k ints, and its percentiles are within 1 %.
    """

    PER_E_FOLD = 100  # buckets per factor e → bucket width ≈ 1 %
    MAX_US = 600e6

    __slots__ = ("counts", "max_us", "n", "sum_us")

    def __init__(self) -> None:
        self.counts = [0] * (int(math.log(self.MAX_US) * self.PER_E_FOLD) + 2)
        self.n = 0
        self.sum_us = 0.0
        self.max_us = 0.0

    def record_us(self, us: float) -> None:
        self.n += 1
        self.sum_us += us
        if us > self.max_us:
            self.max_us = us
        if us < 1.0:
            self.counts[0] += 1
        else:
            idx = int(math.log(us) * 100.0)
            last = len(self.counts) - 1
            self.counts[idx if idx < last else last] += 1

    def percentile_us(self, q: float) -> float:
        """Upper-ish estimate (bucket middle) of the q-quantile, 0 < q ≤ 1."""
        if self.n == 0:
            return math.nan
        rank = max(1, math.ceil(q * self.n))
        seen = 0
        for idx, count in enumerate(self.counts):
            seen += count
            if seen >= rank:
                return min(math.exp((idx + 0.5) / self.PER_E_FOLD), self.max_us)
        return self.max_us

    def summary_ms(self) -> dict[str, float | int | None]:
        def ms(us: float) -> float | None:
            return None if math.isnan(us) else round(us / 1000.0, 3)

        return {
            "n": self.n,
            "mean": ms(self.sum_us / self.n) if self.n else None,
            "p50": ms(self.percentile_us(0.50)),
            "p90": ms(self.percentile_us(0.90)),
            "p99": ms(self.percentile_us(0.99)),
            "max": ms(self.max_us) if self.n else None,
        }


# --------------------------------------------------------------------------- #
# Subscribers
# --------------------------------------------------------------------------- #

_HEADERS, _CHUNKED, _RAW, _DONE = range(4)


class SseSubscriber(asyncio.Protocol):
    """One EventSource-like subscriber connection with exact per-channel accounting.

    Sequence tracking per channel: ``next`` is one past the highest seq seen; a
    jump records the skipped seqs as gaps; a seq below ``next`` is *reordered* if
    it fills a gap, else a *duplicate*. Missing = gaps left + seqs never reached.
    """

    __slots__ = (
        "_cbuf",
        "_chunk_left",
        "_chunk_skip",
        "_hbuf",
        "_lf_skip",
        "_pool",
        "_request",
        "_sbuf",
        "_state",
        "bad",
        "channels",
        "closed",
        "dup",
        "events",
        "foreign",
        "gaps",
        "next",
        "other",
        "ready",
        "refused",
        "reordered",
        "status",
        "transport",
    )

    def __init__(self, pool: SubscriberPool, request: bytes, channels: tuple[int, ...]) -> None:
        self._pool = pool
        self._request = request
        self.channels = channels
        self._state = _HEADERS
        self._hbuf = b""
        self._cbuf = b""
        self._sbuf = b""
        self._chunk_left = 0
        self._chunk_skip = 0
        self._lf_skip = False
        self.ready: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.status = 0
        self.refused = ""  # a 200 with a finite body: why the server said to retry later
        self.closed = False
        self.events = 0  # dispatched SSE events with data
        self.other = 0  # events without our "s" field (e.g. clock ticks)
        self.bad = 0  # data that is not JSON
        self.dup = 0
        self.reordered = 0
        self.foreign = 0  # events of a channel this subscriber did not ask for
        self.next: dict[int, int] = {}
        self.gaps: set[tuple[int, int]] | None = None

    def itself(self) -> SseSubscriber:
        """Protocol factory for ``create_connection`` that hands over this object."""
        return self

    # -- asyncio.Protocol ---------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not registered as asyncio.Transport subclasses
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self._request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pool.lost += 1
        if not self.ready.done():
            self.ready.set_result(False)

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()  # once per read: the receive time of all it holds
        state = self._state
        if state == _CHUNKED:
            # Fast path: the read is exactly one whole chunk holding one frame
            # (how servers write), with nothing pending from earlier reads.
            if not (self._cbuf or self._chunk_left or self._chunk_skip):
                eol = data.find(b"\r\n", 0, 10)
                if eol > 0:
                    try:
                        size = int(data[:eol], 16)
                    except ValueError:  # chunk extension: the general path
                        size = -1
                    end = len(data) - 2
                    if (
                        size > 0
                        and end == eol + 2 + size
                        and data[end:] == b"\r\n"
                        and self._one_event(data, eol + 2, end, now)
                    ):
                        return
            self._feed_chunked(data, now)
        elif state == _RAW:
            if not self._one_event(data, 0, len(data), now):
                self._feed_sse(data, now)
        elif state == _HEADERS:
            self._feed_headers(data, now)

    def _one_event(self, data: bytes, start: int, end: int, now: int) -> bool:
        """Dispatch ``data[start:end]`` if it is exactly one LF-terminated event
        with a single ``data:`` line and nothing buffered; else return False and
        let the general parser take it. Saves most of the per-event Python calls."""
        if (
            self._sbuf
            or self._lf_skip
            or data[end - 2 : end] != b"\n\n"
            or data.find(b"\r", start, end) >= 0
            or data.find(b"\n\n", start, end - 2) >= 0
        ):
            return False
        i = data.find(b"data:", start, end)
        if i < 0 or (i > start and data[i - 1] != 0x0A):
            return False
        if data.find(b"\ndata", i + 5, end) >= 0:
            return False
        j = data.find(b"\n", i, end)
        if data[i + 5] == 0x20:
            i += 1
        self._dispatch(data[i + 5 : j], now)
        return True

    # -- HTTP ---------------------------------------------------------------
    def _feed_headers(self, data: bytes, now: int) -> None:
        buf = self._hbuf + data
        end = buf.find(_CRLF2)
        if end < 0:
            if len(buf) > 65536:
                self._fail()
            self._hbuf = buf
            return
        self._hbuf = b""
        lines = buf[:end].split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip().lower()
        if self.status != 200 or not headers.get(b"content-type", b"").startswith(
            b"text/event-stream"
        ):
            self._fail()
            return
        if b"content-length" in headers:
            # A stream never has a length: this is a 200 that tells an EventSource to retry
            # later (the hub's answer when it is full or its backplane is away). Counting
            # it as connected would count its events as lost instead of saying why.
            comments = [ln[1:].strip() for ln in buf[end + 4 :].split(b"\n") if ln[:1] == b":"]
            self.refused = comments[0].decode(errors="replace") if comments else "a finite body"
            self._fail()
            return
        chunked = b"chunked" in headers.get(b"transfer-encoding", b"")
        self._state = _CHUNKED if chunked else _RAW
        self.ready.set_result(True)
        rest = buf[end + 4 :]
        if rest:
            self._feed_body(rest, now)

    def _feed_body(self, data: bytes, now: int) -> None:
        if self._state == _CHUNKED:
            self._feed_chunked(data, now)
        else:
            self._feed_sse(data, now)

    def _fail(self) -> None:
        self._state = _DONE
        if not self.ready.done():
            self.ready.set_result(False)
        if self.transport is not None:
            self.transport.abort()

    def _feed_chunked(self, data: bytes, now: int) -> None:
        """Strip chunk framing incrementally; hand the payload bytes to SSE."""
        buf = self._cbuf + data if self._cbuf else data
        pos, end = 0, len(buf)
        left = self._chunk_left
        out: list[bytes] = []
        while pos < end:
            if left:
                take = left if left <= end - pos else end - pos
                out.append(buf[pos : pos + take])
                pos += take
                left -= take
                if not left:
                    self._chunk_skip = 2  # the CRLF after the chunk data
                continue
            while self._chunk_skip and pos < end:
                pos += 1
                self._chunk_skip -= 1
            if pos >= end:
                break
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                break
            size_field = buf[pos:eol].split(b";", 1)[0]
            try:
                size = int(size_field, 16)
            except ValueError:
                self._fail()
                return
            pos = eol + 2
            if size == 0:
                self._state = _DONE  # server ended the stream
                break
            left = size
        self._chunk_left = left
        self._cbuf = buf[pos:] if pos < end else b""
        if out:
            self._feed_sse(out[0] if len(out) == 1 else b"".join(out), now)

    # -- SSE ----------------------------------------------------------------
    def _feed_sse(self, data: bytes, now: int) -> None:
        """Normalise line ends to LF, then parse every complete event block."""
        if self._lf_skip:
            self._lf_skip = False
            if data[:1] == b"\n":  # second half of a CRLF split across reads
                data = data[1:]
        if b"\r" in data:
            if data[-1:] == b"\r":
                self._lf_skip = True  # a CR ends a line now, don't wait for an LF
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buf = self._sbuf + data if self._sbuf else data
        cut = buf.rfind(b"\n\n")
        if cut < 0:
            self._sbuf = buf
            return
        self._sbuf = buf[cut + 2 :]
        block = buf[:cut]
        if b"data" in block:
            self._parse_block(block, now)

    def _parse_block(self, block: bytes, now: int) -> None:
        """Dispatch events in ``block`` (lines split by LF, events by blank lines)."""
        data_lines: list[bytes] = []
        for line in block.split(b"\n"):
            if not line:
                if data_lines:
                    self._dispatch(b"\n".join(data_lines), now)
                    data_lines = []
            elif line.startswith(b"data"):
                if len(line) == 4:
                    data_lines.append(b"")
                elif line[4] == 0x3A:  # "data:"
                    value = line[5:]
                    data_lines.append(value[1:] if value[:1] == b" " else value)
            # comments (":"), id, event, retry and unknown fields: ignored
        if data_lines:
            self._dispatch(b"\n".join(data_lines), now)

    def _dispatch(self, payload: bytes, now: int) -> None:
        self.events += 1
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError:
            self.bad += 1
            return
        if type(obj) is not dict or "s" not in obj:
            self.other += 1
            self._pool.on_other(obj, now)
            return
        c = obj.get("c", 0)
        s = obj["s"]
        if c not in self.channels:
            self.foreign += 1
            return
        nxt = self.next.get(c, 0)
        if s == nxt:
            self.next[c] = s + 1
        elif s > nxt:
            if self.gaps is None:
                self.gaps = set()
            self.gaps.update((c, x) for x in range(nxt, min(s, nxt + 1_000_000)))
            self.next[c] = s + 1
        elif self.gaps is not None and (c, s) in self.gaps:
            self.gaps.discard((c, s))
            self.reordered += 1
        else:
            self.dup += 1
        t = obj.get("t", 0)
        lat_us = (now - t) / 1000.0 if type(t) is int else (now / 1e9 - t) * 1e6
        pool = self._pool
        pool.delivered += 1
        hist = pool.warm_latency if "w" in obj else pool.latency
        # Histogram.record_us inlined: this runs once per delivered event.
        hist.n += 1
        hist.sum_us += lat_us
        if lat_us > hist.max_us:
            hist.max_us = lat_us
        idx = int(_log(lat_us) * 100.0) if lat_us >= 1.0 else 0
        counts = hist.counts
        counts[idx if idx < len(counts) else -1] += 1

    def missing(self, published: Sequence[int]) -> int:
        """Seqs of our channels never received: gaps + those past the last seen."""
        gone = len(self.gaps) if self.gaps else 0
        for c in self.channels:
            gone += max(0, published[c] - self.next.get(c, 0))
        return gone

    def close(self) -> None:
        """Close with RST: no TIME_WAIT, so back-to-back scenarios keep their ports."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
        transport.abort()


@dataclass
class PoolReport:
    """What a pool of subscribers saw; all counts are exact."""

    subscribers: int
    connected: int
    connect_errors: dict[str, int]
    closed_early: int
    events: int
    delivered: int
    other: int
    bad: int
    expected: int
    missing: int
    duplicated: int
    reordered: int
    foreign: int
    subscribers_with_loss: int
    latency_ms: dict[str, float | int | None]
    warmup_latency_ms: dict[str, float | int | None]
    other_per_subscriber: dict[str, float] = field(default_factory=dict)
    clock_lag_ms: dict[str, float | int | None] = field(default_factory=dict)

    @property
    def loss(self) -> int:
        """Events lost in any way: missing + duplicated + reordered + foreign."""
        return self.missing + self.duplicated + self.reordered + self.foreign

    @property
    def lossless(self) -> bool:
        return not self.loss


class SubscriberPool:
    """N subscriber connections in this process, opened in bounded batches."""

    def __init__(self, host: str, port: int, *, concurrency: int = 200) -> None:
        self.host = host
        self.port = port
        self.concurrency = concurrency
        self.subs: list[SseSubscriber] = []
        self.connect_errors: Counter[str] = Counter()
        self.latency = Histogram()
        self.warm_latency = Histogram()
        self.clock_lag = Histogram()
        self.delivered = 0  # events with a seq, all subscribers
        self.lost = 0  # connections closed (by either side)
        self._closing = False

    def on_other(self, obj: Any, now: int) -> None:
        """Events that are not ours, e.g. clock ticks: lag behind their own stamp."""
        if type(obj) is dict and type(iso := obj.get("iso")) is str:
            try:
                stamp = datetime.fromisoformat(iso).timestamp()
            except ValueError:
                return
            self.clock_lag.record_us(max(0.0, now / 1000.0 - stamp * 1e6))

    async def connect(
        self,
        specs: Sequence[tuple[str, tuple[int, ...]]],
        *,
        limit_s: float = 60.0,
        port: int | None = None,
    ) -> float:
        """Open one subscriber per (path, channel indices); return seconds taken.

        ``concurrency`` connects at a time keep the SYN queue below the server's
        listen backlog, and each waits for the 200 headers, so when this returns
        every subscriber that made it is registered on the server. ``port`` (default:
        the pool's) lets one pool, with one set of counters and histograms, hold
        subscribers of several servers of a cluster.
        """
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + limit_s
        port = self.port if port is None else port
        host_hdr = f"{self.host}:{port}"
        indices = iter(range(len(specs)))

        async def worker() -> None:
            for i in indices:
                path, channels = specs[i]
                request = (
                    f"GET {path} HTTP/1.1\r\nHost: {host_hdr}\r\n"
                    "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
                ).encode()
                remaining = deadline - loop.time()
                if remaining <= 0:
                    self.connect_errors["timeout (overall)"] += 1
                    continue
                proto = SseSubscriber(self, request, channels)
                try:
                    async with asyncio.timeout(min(remaining, 20.0)):
                        await loop.create_connection(proto.itself, self.host, port)
                        ok = await proto.ready
                except TimeoutError:
                    self.connect_errors["timeout"] += 1
                    proto.close()
                    continue
                except OSError as exc:
                    self.connect_errors[type(exc).__name__] += 1
                    continue
                if ok:
                    self.subs.append(proto)
                elif proto.refused:
                    self.connect_errors[f"refused: {proto.refused}"] += 1
                else:
                    self.connect_errors[f"status {proto.status}"] += 1

        await asyncio.gather(*(worker() for _ in range(self.concurrency)))
        return loop.time() - start

    @property
    def connected(self) -> int:
        return sum(1 for s in self.subs if not s.closed)

    def expected_deliveries(self, published: Sequence[int]) -> int:
        return sum(published[c] for s in self.subs for c in s.channels)

    async def drain(self, published: Sequence[int], limit_s: float, *, poll: float = 0.05) -> bool:
        """Wait until every subscriber reached the last seq of its channels."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit_s
        while loop.time() < deadline:
            if all(
                s.next.get(c, 0) >= published[c] or s.closed for s in self.subs for c in s.channels
            ):
                return True
            await asyncio.sleep(poll)
        return False

    def report(self, published: Sequence[int] | None, n_specs: int) -> PoolReport:
        published = published or []
        missing = with_loss = 0
        for s in self.subs:
            gone = s.missing(published) if published else 0
            missing += gone
            if gone or s.dup or s.reordered:
                with_loss += 1
        others = sorted(s.other for s in self.subs)
        return PoolReport(
            subscribers=n_specs,
            connected=len(self.subs),
            connect_errors=dict(self.connect_errors),
            closed_early=sum(1 for s in self.subs if s.closed),
            events=sum(s.events for s in self.subs),
            delivered=self.delivered,
            other=sum(others),
            bad=sum(s.bad for s in self.subs),
            expected=self.expected_deliveries(published) if published else 0,
            missing=missing,
            duplicated=sum(s.dup for s in self.subs),
            reordered=sum(s.reordered for s in self.subs),
            foreign=sum(s.foreign for s in self.subs),
            subscribers_with_loss=with_loss,
            latency_ms=self.latency.summary_ms(),
            warmup_latency_ms=self.warm_latency.summary_ms(),
            other_per_subscriber=(
                {"min": others[0], "median": others[len(others) // 2], "max": others[-1]}
                if others
                else {}
            ),
            clock_lag_ms=self.clock_lag.summary_ms() if self.clock_lag.n else {},
        )

    def close(self) -> None:
        for s in self.subs:
            s.close()


# --------------------------------------------------------------------------- #
# Publisher
# --------------------------------------------------------------------------- #


class HttpConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; requests may be pipelined (FIFO answers).

    Answers are parsed just enough to get the status and skip the body
    (Content-Length or chunked).
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.pending: deque[tuple[float, asyncio.Future[int]]] = deque()
        self._buf = b""
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        while self.pending:
            _, fut = self.pending.popleft()
            if not fut.done():
                fut.set_exception(ConnectionError("publisher connection lost"))

    def send(self, request: bytes) -> asyncio.Future[int]:
        """Write one request; the future resolves to the answer's status."""
        if self.closed or self.transport is None:
            raise ConnectionError("publisher connection closed")
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.pending.append((time.perf_counter(), fut))
        self.transport.write(request)
        return fut

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data
        while self.pending:
            used = self._parse_one(buf)
            if used < 0:
                break
            buf = buf[used:]
        self._buf = buf

    def _parse_one(self, buf: bytes) -> int:
        """Consume one full answer from ``buf``; -1 if it is not complete yet."""
        head_end = buf.find(_CRLF2)
        if head_end < 0:
            return -1
        lines = buf[:head_end].split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = 0
        chunked = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        pos = head_end + 4
        if chunked:
            while True:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    return -1
                size = int(buf[pos:eol].split(b";", 1)[0], 16)
                pos = eol + 2 + size + 2
                if pos > len(buf):
                    return -1
                if size == 0:
                    break
        else:
            pos += length
            if pos > len(buf):
                return -1
        _, fut = self.pending.popleft()
        if not fut.done():
            fut.set_result(status)
        return pos


@dataclass
class PublishTarget:
    """How to address one server's publish API (or a cluster's: ``more_ports``)."""

    host: str
    port: int
    api: Api
    channels: list[str]
    #: Further servers of one cluster. Channel ``i`` is always published to
    #: ``ports[i % len(ports)]``, on one connection (see ``route``), so the events of a
    #: channel reach the cluster in publish order (round-robin per request would let
    #: two servers store one channel's events in either order).
    more_ports: tuple[int, ...] = ()
    #: Keep-alive connections per server. A server answers the requests of one
    #: connection one after the other, so one connection caps the rate at one
    #: request per round trip (a Redis round trip included, for a hub with Redis).
    connections: int = 1

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.port, *self.more_ports)

    def route(self, channel: int) -> int:
        """The connection that carries ``channel``: server ``channel mod P``, then that
        server's connection ``(channel div P) mod connections``."""
        n = len(self.ports)
        return (channel % n) * self.connections + (channel // n) % self.connections

    def request(self, path: str, body: bytes, port: int | None = None) -> bytes:
        return (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{port or self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    def requests_for(
        self, events: list[tuple[int, dict[str, Any]]], port: int | None = None
    ) -> list[bytes]:
        """HTTP requests carrying ``events`` (channel index, data): one batch
        ``POST /publish`` on the hub API, one pipelined POST per event on nchan
        (which has no batch publish)."""
        if self.api == "nchan":
            return [
                self.request(f"/pub?id={self.channels[c]}", orjson.dumps(d), port)
                for c, d in events
            ]
        if len(events) == 1:
            c, d = events[0]
            body = orjson.dumps({"event": "tick", "data": d})
            return [self.request(f"/channels/{self.channels[c]}/events", body, port)]
        items = [{"channel": self.channels[c], "event": "tick", "data": d} for c, d in events]
        return [self.request("/publish", orjson.dumps(items), port)]

    def routed_requests(self, events: list[tuple[int, dict[str, Any]]]) -> list[tuple[int, bytes]]:
        """(connection index, request) for ``events``: each connection gets the events
        of its channels (see ``route``), in one request where the API allows."""
        if len(self.ports) == 1 and self.connections == 1:
            return [(0, req) for req in self.requests_for(events)]
        groups: dict[int, list[tuple[int, dict[str, Any]]]] = {}
        for c, d in events:
            groups.setdefault(self.route(c), []).append((c, d))
        return [
            (i, req)
            for i, mine in sorted(groups.items())
            for req in self.requests_for(mine, self.ports[i // self.connections])
        ]


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(orjson.dumps(obj).decode() + "\n")
    sys.stdout.flush()


async def _open(target: PublishTarget, port: int | None = None) -> HttpConnection:
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(HttpConnection, target.host, port or target.port)
    return conn


async def publish_at_rate(
    target: PublishTarget,
    *,
    rate: float,
    batch: int,
    warmup_s: float,
    duration_s: float,
    pad: int = 0,
    max_inflight: int = 256,
    emit: Callable[[dict[str, Any]], None] = _emit,
) -> dict[str, Any]:
    """Publish ``rate`` events/s for warm-up then the measured window.

    Events go round-robin over the channels, each channel with its own seq from
    0; every ``batch / rate`` seconds one batch is sent on an absolute schedule
    (so a late batch does not shift the next), without waiting for earlier
    answers unless ``max_inflight`` are outstanding on a connection. With several
    ports (a cluster) or connections, a batch is split by channel over them.
    """
    loop = asyncio.get_running_loop()
    conns = [await _open(target, port) for port in target.ports for _ in range(target.connections)]
    n_ch = len(target.channels)
    warm_events = math.ceil(rate * warmup_s / batch) * batch
    total = warm_events + math.ceil(rate * duration_s / batch) * batch
    interval = batch / rate
    seqs = [0] * n_ch
    padding = "x" * pad
    resp_latency = Histogram()
    statuses: Counter[int] = Counter()
    futures: list[asyncio.Future[int]] = []
    max_lag = 0.0
    stalls = 0
    errors = 0
    k = 0
    t0 = loop.time() + 0.02
    measure_t = t0
    cpu0 = measure_cpu = time.process_time()

    def done_cb(sent: float) -> Callable[[asyncio.Future[int]], None]:
        def cb(fut: asyncio.Future[int]) -> None:
            nonlocal errors
            if fut.cancelled() or fut.exception() is not None:
                errors += 1
                return
            statuses[fut.result()] += 1
            resp_latency.record_us((time.perf_counter() - sent) * 1e6)

        return cb

    batch_no = 0
    while k < total:
        due = t0 + batch_no * interval
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        max_lag = max(max_lag, loop.time() - due)
        if k == warm_events:
            measure_t = loop.time()
            measure_cpu = time.process_time()
            emit({"event": "measure_start", "k": k})
        events: list[tuple[int, dict[str, Any]]] = []
        now_ns = time.time_ns()
        for _ in range(batch):
            c = k % n_ch
            d: dict[str, Any] = {"c": c, "s": seqs[c], "t": now_ns}
            if k < warm_events:
                d["w"] = 1
            if pad:
                d["p"] = padding
            seqs[c] += 1
            events.append((c, d))
            k += 1
        for idx, req in target.routed_requests(events):
            conn = conns[idx]
            if len(conn.pending) >= max_inflight:
                stalls += 1
                await asyncio.wait([conn.pending[0][1]])
            fut = conn.send(req)
            fut.add_done_callback(done_cb(time.perf_counter()))
            futures.append(fut)
        batch_no += 1
        if any(conn.closed for conn in conns):
            break
    send_end = loop.time()
    if futures:
        await asyncio.wait(futures, timeout=30.0)
    ok = sum(n for st, n in statuses.items() if 200 <= st < 300)
    failed = len(futures) - ok
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()
    return {
        "event": "done",
        "published": seqs,
        "events": k,
        "measured_events": k - warm_events,
        "requests": len(futures),
        "failed_requests": failed,
        "statuses": {str(st): n for st, n in statuses.items()},
        # n batches span n - 1 intervals; count the last one's too
        "achieved_rate": round((k - warm_events) / max(send_end - measure_t + interval, 1e-9), 2),
        "max_lag_ms": round(max_lag * 1000, 3),
        "stalls": stalls,
        "response_ms": resp_latency.summary_ms(),
        "cpu_s": round(time.process_time() - cpu0, 3),
        "measure_cpu_s": round(time.process_time() - measure_cpu, 3),
    }


async def publish_throughput(
    target: PublishTarget,
    *,
    batch: int,
    warmup_s: float,
    duration_s: float,
    emit: Callable[[dict[str, Any]], None] = _emit,
) -> dict[str, Any]:
    """Sequential request/response on each of ``target.connections`` keep-alive
    connections at once, as fast as the server answers: ``batch`` = 1 is single
    publishes, more is one ``/publish`` of that many events (nchan: that many
    pipelined POSTs, awaited together)."""
    loop = asyncio.get_running_loop()
    conns = [await _open(target) for _ in range(target.connections)]
    seq = 0
    statuses: Counter[int] = Counter()
    resp_latency = Histogram()

    async def one(conn: HttpConnection, end: float) -> int:
        nonlocal seq
        events = 0
        while loop.time() < end:
            now_ns = time.time_ns()
            evs = [(0, {"c": 0, "s": seq + i, "t": now_ns}) for i in range(batch)]
            seq += batch
            sent = time.perf_counter()
            futs = [conn.send(r) for r in target.requests_for(evs)]
            for st in await asyncio.gather(*futs):
                statuses[st] += 1
            resp_latency.record_us((time.perf_counter() - sent) * 1e6)
            events += batch
        return events

    async def run_for(seconds: float) -> tuple[int, float]:
        start = loop.time()
        counts = await asyncio.gather(*(one(conn, start + seconds) for conn in conns))
        return sum(counts), loop.time() - start

    await run_for(warmup_s)
    statuses.clear()
    resp_latency = Histogram()
    cpu0 = time.process_time()
    emit({"event": "measure_start"})
    events, elapsed = await run_for(duration_s)
    cpu = time.process_time() - cpu0
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()
    requests = sum(statuses.values())
    return {
        "event": "done",
        "events": events,
        "requests": requests,
        "failed_requests": sum(n for st, n in statuses.items() if not 200 <= st < 300),
        "statuses": {str(st): n for st, n in statuses.items()},
        "elapsed_s": round(elapsed, 3),
        "events_per_s": round(events / elapsed, 1),
        "requests_per_s": round(requests / elapsed, 1),
        "response_ms": resp_latency.summary_ms(),
        "connections": len(conns),
        "cpu_s": round(cpu, 3),
        "cpu_pct": round(100 * cpu / elapsed, 1),
    }


class StreamAnswer(asyncio.Protocol):
    """The answer to one ``POST /publish/stream``: its status, then one JSON receipt
    per line (chunked or not), counted as they arrive."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.status = 0
        self.head_done = False
        self.ended = False  # the last chunk came
        self.closed = False
        self.receipts = 0
        self.refused = 0  # receipts that carry an "error"
        self.changed = asyncio.Event()
        self._hbuf = b""
        self._cbuf = b""
        self._lines = b""
        self._chunked = False
        self._chunk_left = 0
        self._skip = 0  # the CRLF after a chunk's data

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.changed.set()

    def data_received(self, data: bytes) -> None:
        if not self.head_done:
            buf = self._hbuf + data
            end = buf.find(_CRLF2)
            if end < 0:
                self._hbuf = buf
                return
            lines = buf[:end].split(b"\r\n")
            parts = lines[0].split(b" ", 2)
            self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
            self._chunked = any(
                ln.lower().startswith(b"transfer-encoding:") and b"chunked" in ln.lower()
                for ln in lines[1:]
            )
            self.head_done = True
            data, self._hbuf = buf[end + 4 :], b""
        self._receipts(self._dechunk(data) if self._chunked else data)
        self.changed.set()

    def _dechunk(self, data: bytes) -> bytes:
        buf = self._cbuf + data
        out = []
        pos = 0
        while not self.ended:
            if self._chunk_left:
                take = min(self._chunk_left, len(buf) - pos)
                out.append(buf[pos : pos + take])
                pos += take
                self._chunk_left -= take
                if self._chunk_left:
                    break
                self._skip = 2
            if self._skip:
                take = min(self._skip, len(buf) - pos)
                pos += take
                self._skip -= take
                if self._skip:
                    break
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                break
            size = int(buf[pos:eol].split(b";", 1)[0], 16)
            pos = eol + 2
            if size == 0:
                self.ended = True
            self._chunk_left = size
        self._cbuf = buf[pos:]
        return b"".join(out)

    def _receipts(self, data: bytes) -> None:
        *lines, self._lines = (self._lines + data).split(b"\n")
        for line in lines:
            if not line.strip():
                continue
            self.receipts += 1
            try:
                receipt = orjson.loads(line)
            except orjson.JSONDecodeError:
                receipt = None
            if type(receipt) is not dict or "error" in receipt:
                self.refused += 1


async def publish_stream(
    target: PublishTarget,
    *,
    warmup_s: float,
    duration_s: float,
    window: int = 1000,
    per_chunk: int = 100,
    emit: Callable[[dict[str, Any]], None] = _emit,
) -> dict[str, Any]:
    """One ``POST /publish/stream`` (``application/x-ndjson``, chunked): one batch item
    ``{"channel","event","data"}`` per line, at most ``window`` without a receipt yet,
    sent in chunks of up to ``per_chunk`` lines; events/s is receipts per second over
    the window. A server without the route answers 404 (status in the result, no rate)."""
    loop = asyncio.get_running_loop()
    answer, transport = await _open_publish_stream(target)
    prefix = b'{"channel":' + orjson.dumps(target.channels[0]) + b',"event":"tick","data":'
    sent = 0
    start = loop.time()
    measure_at, end = start + warmup_s, start + warmup_s + duration_s
    marked: tuple[float, int, float] | None = None  # time, receipts, CPU at the window's start

    def mark() -> tuple[float, int, float]:
        emit({"event": "measure_start"})
        return loop.time(), answer.receipts, time.process_time()

    while (now := loop.time()) < end and not answer.closed:
        if answer.head_done and answer.status != 200:
            break
        if marked is None and now >= measure_at:
            marked = mark()
        room = window - (sent - answer.receipts)
        if room <= 0:
            answer.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(answer.changed.wait(), min(0.05, end - now))
            continue
        n = min(room, per_chunk)
        now_ns = time.time_ns()
        body = b"".join(
            prefix + orjson.dumps({"c": 0, "s": sent + i, "t": now_ns}) + b"}\n" for i in range(n)
        )
        transport.write(b"%x\r\n%b\r\n" % (len(body), body))
        sent += n
        await asyncio.sleep(0)  # let receipts in
    if marked is None:
        marked = mark()
    t_start, receipts0, cpu0 = marked
    elapsed = max(loop.time() - t_start, 1e-9)
    measured = answer.receipts - receipts0
    cpu = time.process_time() - cpu0
    if not transport.is_closing():
        await _end_publish_stream(answer, transport, sent, 10.0)
    transport.close()
    streamed = answer.status == 200
    return {
        "event": "done",
        "status": answer.status,
        "sent": sent,
        "receipts": answer.receipts,
        "refused": answer.refused,
        "unanswered": sent - answer.receipts if streamed else 0,
        "events": measured,
        "elapsed_s": round(elapsed, 3),
        "events_per_s": round(measured / elapsed, 1) if streamed else None,
        "failed_requests": 0 if streamed else 1,
        "cpu_s": round(cpu, 3),
        "cpu_pct": round(100 * cpu / elapsed, 1),
    }


async def _open_publish_stream(target: PublishTarget) -> tuple[StreamAnswer, asyncio.Transport]:
    """Connect and send the head of a chunked ``POST /publish/stream``."""
    loop = asyncio.get_running_loop()
    _, answer = await loop.create_connection(StreamAnswer, target.host, target.port)
    assert answer.transport is not None
    answer.transport.write(
        f"POST /publish/stream HTTP/1.1\r\nHost: {target.host}:{target.port}\r\n"
        "Content-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    )
    return answer, answer.transport


async def _end_publish_stream(
    answer: StreamAnswer, transport: asyncio.Transport, sent: int, limit_s: float
) -> None:
    """End the body, then wait (up to ``limit_s``) for the receipts of all ``sent`` lines."""
    loop = asyncio.get_running_loop()
    if not transport.is_closing():
        transport.write(b"0\r\n\r\n")
    deadline = loop.time() + limit_s
    while answer.receipts < sent and not (answer.closed or answer.ended):
        if (answer.head_done and answer.status != 200) or loop.time() > deadline:
            break
        answer.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(answer.changed.wait(), 0.1)


async def publish_stream_at_rate(
    target: PublishTarget,
    *,
    rate: float,
    batch: int,
    warmup_s: float,
    duration_s: float,
    pad: int = 0,
    emit: Callable[[dict[str, Any]], None] = _emit,
) -> dict[str, Any]:
    """``publish_at_rate``'s schedule and events, sent as lines of one ``POST
    /publish/stream`` instead of one request each: how a service that publishes a lot
    would feed the hub. Each scheduled batch is one chunk of ``batch`` lines."""
    loop = asyncio.get_running_loop()
    answer, transport = await _open_publish_stream(target)
    prefixes = [
        b'{"channel":' + orjson.dumps(name) + b',"event":"tick","data":' for name in target.channels
    ]
    n_ch = len(target.channels)
    warm_events = math.ceil(rate * warmup_s / batch) * batch
    total = warm_events + math.ceil(rate * duration_s / batch) * batch
    interval = batch / rate
    seqs = [0] * n_ch
    padding = "x" * pad
    max_lag = 0.0
    k = 0
    t0 = loop.time() + 0.02
    measure_t = t0
    cpu0 = measure_cpu = time.process_time()
    batch_no = 0
    while k < total and not answer.closed:
        if answer.head_done and answer.status != 200:
            break
        due = t0 + batch_no * interval
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        max_lag = max(max_lag, loop.time() - due)
        if k == warm_events:
            measure_t = loop.time()
            measure_cpu = time.process_time()
            emit({"event": "measure_start", "k": k})
        lines = []
        now_ns = time.time_ns()
        for _ in range(batch):
            c = k % n_ch
            d: dict[str, Any] = {"c": c, "s": seqs[c], "t": now_ns}
            if k < warm_events:
                d["w"] = 1
            if pad:
                d["p"] = padding
            seqs[c] += 1
            lines.append(prefixes[c] + orjson.dumps(d) + b"}\n")
            k += 1
        body = b"".join(lines)
        transport.write(b"%x\r\n%b\r\n" % (len(body), body))
        batch_no += 1
    send_end = loop.time()
    await _end_publish_stream(answer, transport, k, 30.0)
    transport.close()
    unanswered = k - answer.receipts
    return {
        "event": "done",
        "published": seqs,
        "events": k,
        "measured_events": k - warm_events,
        "requests": 1,
        "status": answer.status,
        "refused": answer.refused,
        "unanswered": unanswered,
        "failed_requests": answer.refused + unanswered + (answer.status != 200),
        "achieved_rate": round((k - warm_events) / max(send_end - measure_t + interval, 1e-9), 2),
        "max_lag_ms": round(max_lag * 1000, 3),
        "cpu_s": round(time.process_time() - cpu0, 3),
        "measure_cpu_s": round(time.process_time() - measure_cpu, 3),
    }


def _ports(text: str) -> tuple[int, ...]:
    """``"8001"`` or ``"8001,8002"`` → the ports (argparse type)."""
    ports = tuple(int(part) for part in text.split(",") if part.strip())
    if not ports:
        raise argparse.ArgumentTypeError("expected a port or a comma list of ports")
    return ports


def _publish_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="loadclient.py publish")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--port",
        type=_ports,
        required=True,
        help="a port, or a comma list for a cluster (rate mode: channel i goes to the "
        "i-th port modulo their number)",
    )
    parser.add_argument("--api", choices=["hub", "nchan"], default="hub")
    parser.add_argument("--channel-prefix", default="bench-")
    parser.add_argument("--channels", type=int, default=1, help="how many channels")
    parser.add_argument(
        "--connections", type=int, default=1, help="keep-alive connections per server"
    )
    parser.add_argument(
        "--mode",
        choices=["rate", "rate-stream", "throughput", "stream"],
        default="rate",
        help="rate: on a schedule; rate-stream: the same schedule as lines of one POST "
        "/publish/stream; throughput: request after answer on each connection; "
        "stream: one POST /publish/stream (ndjson), as fast as receipts come back",
    )
    parser.add_argument("--rate", type=float, default=10.0, help="events per second")
    parser.add_argument("--batch", type=int, default=1, help="events per request")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds")
    parser.add_argument("--pad", type=int, default=0, help="padding bytes per event")
    args = parser.parse_args(argv)
    if args.mode != "rate" and len(args.port) > 1:
        parser.error(f"--mode {args.mode} takes one --port")
    if args.connections < 1:
        parser.error("--connections must be at least 1")
    install_uvloop()
    target = PublishTarget(
        args.host,
        args.port[0],
        args.api,
        [f"{args.channel_prefix}{i}" for i in range(args.channels)],
        more_ports=args.port[1:],
        connections=args.connections,
    )
    if args.mode == "rate-stream":
        coro = publish_stream_at_rate(
            target,
            rate=args.rate,
            batch=args.batch,
            warmup_s=args.warmup,
            duration_s=args.duration,
            pad=args.pad,
        )
    elif args.mode == "rate":
        coro = publish_at_rate(
            target,
            rate=args.rate,
            batch=args.batch,
            warmup_s=args.warmup,
            duration_s=args.duration,
            pad=args.pad,
        )
    elif args.mode == "throughput":
        coro = publish_throughput(
            target, batch=args.batch, warmup_s=args.warmup, duration_s=args.duration
        )
    else:
        coro = publish_stream(target, warmup_s=args.warmup, duration_s=args.duration)
    _emit(asyncio.run(coro))
    return 0


def _subscribe_main(argv: Sequence[str]) -> int:
    """Hold N subscribers on one stream path for a while and print what they saw
    (by hand; bench/run.py drives pools itself and knows what was published)."""
    parser = argparse.ArgumentParser(prog="loadclient.py subscribe")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True, help="e.g. /channels/news/events")
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds")
    parser.add_argument(
        "--expect", type=int, help="events published per channel index 0, to count loss"
    )
    args = parser.parse_args(argv)
    install_uvloop()
    raise_nofile_limit()

    async def run() -> PoolReport:
        pool = SubscriberPool(args.host, args.port)
        await pool.connect([(args.path, (0,))] * args.subscribers)
        try:
            await asyncio.sleep(args.duration)
        finally:
            pool.close()
        published = [args.expect] if args.expect is not None else None
        return pool.report(published, args.subscribers)

    report = asyncio.run(run())
    _emit({"event": "report", **dataclasses.asdict(report)})
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["publish"]:
        return _publish_main(argv[1:])
    if argv[:1] == ["subscribe"]:
        return _subscribe_main(argv[1:])
    print(
        "usage: loadclient.py publish --port N [...]   (fixed-rate or throughput publisher)\n"
        "       loadclient.py subscribe --port N --path P [...]   (hold N subscribers)\n"
        "bench/run.py drives both; see bench/README.md",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
