"""The /metrics text: served in Prometheus' text format, and checked by Prometheus' own linter
when it is installed.

``promtool`` comes with Debian's ``prometheus`` package; the test is skipped without it (set
``SSEHUB_PROMTOOL`` to a promtool binary elsewhere).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from hub.metrics import Metrics
from tests.conftest import HubServer


def _rendered() -> str:
    """A Metrics rendering with every kind of line in it: gauges, counters, filled histograms."""
    metrics = Metrics()
    metrics.events_published = 3
    metrics.events_delivered = 7
    for seconds in (0.00005, 0.003, 0.2, 9.0):
        metrics.publish_latency.observe(seconds)
        metrics.fanout_duration.observe(seconds / 2)
    gauges = (
        ("hub_subscribers", "Open event streams (connections) on this process.", 2.0),
        ("hub_backplane_connected", "1 while the backplane answers.", 1.0),
    )
    return metrics.render(gauges)


@pytest.mark.any_backplane
async def test_metrics_are_served_as_the_text_format_version(hub: HubServer) -> None:
    """Scrapers choose the parser by the version parameter: /metrics must answer with the exact
    0.0.4 type, and a body in that format (``# HELP`` / ``# TYPE`` lines, one sample a line,
    ending with a newline)."""
    async with hub.session.get(f"{hub.url}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        text = await response.text()
    assert text.endswith("\n")
    assert "# TYPE hub_subscribers gauge\n" in text
    assert "\nhub_subscribers 0\n" in text


def test_promtool_check_metrics() -> None:
    """``promtool check metrics`` finds no problem (not even a lint warning) in the output."""
    promtool = os.environ.get("SSEHUB_PROMTOOL") or shutil.which("promtool")
    if not promtool:
        pytest.skip("promtool not installed (Debian package prometheus)")
    text = _rendered()
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, (result.stdout, result.stderr, text)
    assert result.stdout.strip() == "" and result.stderr.strip() == "", (
        result.stdout,
        result.stderr,
    )
