"""Counters and histograms, rendered in the Prometheus text format.

Plain attributes and lists rather than a metrics library: the counters are bumped on the fan-out
hot path, where an attribute increment is the cheapest thing Python can do, and the exposition
format is a few lines of text.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["CONTENT_TYPE", "Histogram", "Metrics", "add_snapshots"]

#: The Content-Type of ``Metrics.render()``'s output: Prometheus text exposition format 0.0.4.
#: Scrapers pick their parser by it (without ``version=`` some fall back or guess), so the
#: ``/metrics`` route sends exactly this value.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Seconds; from sub-millisecond fan-outs up to the 100 ms latency budget and beyond.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip


class Histogram:
    __slots__ = ("_bounds", "_counts", "_sum", "help", "name")

    def __init__(self, name: str, help: str, bounds: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.name = name
        self.help = help
        self._bounds = tuple(bounds)
        self._counts = [0] * (len(self._bounds) + 1)
        self._sum = 0.0

    def observe(self, value: float) -> None:
        self._counts[bisect.bisect_left(self._bounds, value)] += 1
        self._sum += value

    def snapshot(self) -> list[Any]:
        return [list(self._counts), self._sum]

    def render(self, snapshot: Sequence[Any] | None = None) -> Iterable[str]:
        counts, total = snapshot if snapshot is not None else (self._counts, self._sum)
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        running = 0
        for bound, count in zip(self._bounds, counts, strict=False):
            running += count
            yield f'{self.name}_bucket{{le="{bound}"}} {running}'
        running += counts[-1]
        yield f'{self.name}_bucket{{le="+Inf"}} {running}'
        yield f"{self.name}_sum {total:.6f}"
        yield f"{self.name}_count {running}"


class Metrics:
    """The hub's counters; gauges are read from the hub when rendered, so they cannot drift."""

    def __init__(self) -> None:
        self.events_published = 0
        self.events_delivered = 0
        self.subscribers_dropped = 0
        self.subscribers_refused = 0
        self.webhooks_sent = 0
        self.webhook_failures = 0
        self.webhooks_dropped = 0
        self.publish_latency = Histogram(
            "hub_publish_to_write_seconds",
            "Time from an event being stored to its bytes being written to every local subscriber.",
        )
        self.fanout_duration = Histogram(
            "hub_fanout_seconds",
            "Duration of one fan-out pass (writing all pending frames to all subscribers).",
        )

    def snapshot(self) -> dict[str, Any]:
        """The counters and histograms as plain data: what a worker sends its engine, summed
        there with the other workers' (``add_snapshots``) for one /metrics of the whole hub."""
        return {
            "events_published": self.events_published,
            "events_delivered": self.events_delivered,
            "subscribers_dropped": self.subscribers_dropped,
            "subscribers_refused": self.subscribers_refused,
            "webhooks_sent": self.webhooks_sent,
            "webhook_failures": self.webhook_failures,
            "webhooks_dropped": self.webhooks_dropped,
            "publish_latency": self.publish_latency.snapshot(),
            "fanout_duration": self.fanout_duration.snapshot(),
        }

    def render(
        self, gauges: Iterable[tuple[str, str, float]], others: Mapping[str, Any] | None = None
    ) -> str:
        """The exposition text; ``others``: the other workers' snapshot, summed, added to this
        process's counters (a hub of several workers shows the whole hub's)."""
        mine = self.snapshot()
        now = add_snapshots(mine, others) if others else mine
        lines: list[str] = []
        for name, help, value in gauges:
            lines += [f"# HELP {name} {help}", f"# TYPE {name} gauge", f"{name} {value:g}"]
        counters = (
            ("hub_events_published_total", "Events accepted by publish on this process.",
             now["events_published"]),
            ("hub_events_delivered_total", "Event frames written to subscribers (live and replay).",
             now["events_delivered"]),
            ("hub_subscribers_dropped_total",
             "Subscribers closed because their unsent output passed max_pending_bytes.",
             now["subscribers_dropped"]),
            ("hub_subscribers_refused_total",
             "Subscribers told to retry later (at capacity, or backplane unavailable).",
             now["subscribers_refused"]),
            ("hub_webhooks_sent_total", "Webhooks the receiver answered with a 2xx.",
             now["webhooks_sent"]),
            ("hub_webhook_failures_total",
             "Webhook tries that failed (no answer, a timeout or a non-2xx; each retried).",
             now["webhook_failures"]),
            ("hub_webhooks_dropped_total",
             "Webhooks never delivered: the queue was full, or every retry failed.",
             now["webhooks_dropped"]),
        )  # fmt: skip
        for name, help, value in counters:
            lines += [f"# HELP {name} {help}", f"# TYPE {name} counter", f"{name} {value}"]
        lines += self.publish_latency.render(now["publish_latency"])
        lines += self.fanout_duration.render(now["fanout_duration"])
        return "\n".join(lines) + "\n"


def add_snapshots(one: Mapping[str, Any], other: Mapping[str, Any]) -> dict[str, Any]:
    """Two snapshots summed key by key (numbers added, lists element by element); a key of one
    only is kept as it is (a worker of another version may count more or less)."""
    summed = dict(one)
    for key, value in other.items():
        mine = summed.get(key)
        if mine is None:
            summed[key] = value
        elif isinstance(value, list) and isinstance(mine, list):
            summed[key] = _add_lists(mine, value)
        elif isinstance(value, int | float) and isinstance(mine, int | float):
            summed[key] = mine + value
    return summed


def _add_lists(one: list[Any], other: list[Any]) -> list[Any]:
    if len(one) != len(other):
        return one
    return [
        _add_lists(a, b) if isinstance(a, list) and isinstance(b, list) else a + b
        for a, b in zip(one, other, strict=True)
    ]
