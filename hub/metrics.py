"""Counters and histograms, rendered in the Prometheus text format.

Plain attributes and lists rather than a metrics library: the counters are bumped on the fan-out
hot path, where an attribute increment is the cheapest thing Python can do, and the exposition
format is a few lines of text.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence

__all__ = ["CONTENT_TYPE", "Histogram", "Metrics"]

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

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        running = 0
        for bound, count in zip(self._bounds, self._counts, strict=False):
            running += count
            yield f'{self.name}_bucket{{le="{bound}"}} {running}'
        running += self._counts[-1]
        yield f'{self.name}_bucket{{le="+Inf"}} {running}'
        yield f"{self.name}_sum {self._sum:.6f}"
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

    def render(self, gauges: Iterable[tuple[str, str, float]]) -> str:
        lines: list[str] = []
        for name, help, value in gauges:
            lines += [f"# HELP {name} {help}", f"# TYPE {name} gauge", f"{name} {value:g}"]
        counters = (
            ("hub_events_published_total", "Events accepted by publish on this process.",
             self.events_published),
            ("hub_events_delivered_total", "Event frames written to subscribers (live and replay).",
             self.events_delivered),
            ("hub_subscribers_dropped_total",
             "Subscribers closed because their unsent output passed max_pending_bytes.",
             self.subscribers_dropped),
            ("hub_subscribers_refused_total",
             "Subscribers told to retry later (at capacity, or backplane unavailable).",
             self.subscribers_refused),
            ("hub_webhooks_sent_total", "Webhooks the receiver answered with a 2xx.",
             self.webhooks_sent),
            ("hub_webhook_failures_total",
             "Webhook tries that failed (no answer, a timeout or a non-2xx; each retried).",
             self.webhook_failures),
            ("hub_webhooks_dropped_total",
             "Webhooks never delivered: the queue was full, or every retry failed.",
             self.webhooks_dropped),
        )  # fmt: skip
        for name, help, value in counters:
            lines += [f"# HELP {name} {help}", f"# TYPE {name} counter", f"{name} {value}"]
        lines += self.publish_latency.render()
        lines += self.fanout_duration.render()
        return "\n".join(lines) + "\n"
