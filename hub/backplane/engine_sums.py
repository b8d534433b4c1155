"""The engine's sums over its workers: subscriber counts (``Presence``) and counters
(``Totals``), each worker's as of its last report.

Apart from ``hub.backplane.engine_server`` (which keeps the links and calls these): they read
what a link reported, nothing of the store.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Protocol

from hub.metrics import add_snapshots

__all__ = ["Reported", "others_counts", "others_totals", "pushed_counts"]


class Reported(Protocol):
    """What a worker's link holds of its reports."""

    worker: int
    counts: dict[str, int]
    streams: int
    totals: dict[str, Any]


def _sum(links: Iterable[Reported]) -> tuple[dict[str, int], int]:
    channels: dict[str, int] = {}
    streams = 0
    for link in links:
        for name, count in link.counts.items():
            if count:
                channels[name] = channels.get(name, 0) + count
        streams += link.streams
    return channels, streams


def others_counts(links: Iterable[Reported], asking: Reported) -> tuple[dict[str, int], int]:
    """Every worker's counts but the asking one's, summed."""
    return _sum(link for link in links if link is not asking)


def pushed_counts(links: Iterable[Reported]) -> Iterator[tuple[Reported, dict[str, int], int]]:
    """For each worker, the others' counts: the hub's sum less its own (one pass for all)."""
    links = list(links)
    total, streams = _sum(links)
    for link in links:
        if link.worker:
            mine = link.counts
            theirs = {n: c - mine.get(n, 0) for n, c in total.items() if c > mine.get(n, 0)}
            yield link, theirs, streams - link.streams


def others_totals(
    links: Iterable[Reported], retired: Mapping[str, Any], asking: Reported | None
) -> dict[str, Any]:
    """The counters of every worker but the asking one, and of the workers that ended."""
    summed = dict(retired)
    for link in links:
        if link is not asking:
            summed = add_snapshots(summed, link.totals)
    return summed
