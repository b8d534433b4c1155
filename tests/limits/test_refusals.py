"""Turning a client away is never silent, and the lines saying so are themselves limited.

Through HTTP on an in-process hub (its log read with caplog, its refusal log given a clock the
test moves, so "a minute later" takes no minute), and the line budget and memory bound of
``hub.refusals`` directly with a hundred thousand made-up addresses.
"""

from __future__ import annotations

import logging

import pytest

from hub.app import REFUSALS
from hub.config import load
from hub.refusals import LINES_PER_WINDOW, MAX_TRACKED, WINDOW, Refusals, shown_as
from tests.conftest import MakeHub
from tests.limits.test_limits import refused


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def refusal_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "hub.refusals"]


@pytest.mark.any_backplane
async def test_a_refused_stream_is_logged_once_a_minute_with_the_count(
    make_hub: MakeHub, caplog: pytest.LogCaptureFixture
) -> None:
    """Five streams over max_client_streams: one line naming the address and the setting; a
    minute later the next refusal's line counts the four in between."""
    hub = await make_hub(profile="public", max_client_streams=1, subscribe_rate=0)
    clock = Clock()
    hub.app[REFUSALS].clock = clock
    caplog.set_level(logging.WARNING, "hub.refusals")
    await hub.subscribe("/channels/a/events")
    for _ in range(5):
        stream = await refused(hub, "/channels/a/events")
        assert stream.response.status == 200 and stream.parser.retry is not None
    lines = refusal_lines(caplog)
    assert lines == [
        "turned away a stream from 127.0.0.1 by max_client_streams (1 open streams per address)"
    ]
    clock.now += WINDOW
    await refused(hub, "/channels/a/events")
    lines = refusal_lines(caplog)
    assert len(lines) == 2 and lines[1].startswith(
        "turned away a stream from 127.0.0.1 by max_client_streams"
    )
    assert "; and 4 more since " in lines[1], lines[1]


@pytest.mark.any_backplane
async def test_each_setting_has_its_own_line(
    make_hub: MakeHub, caplog: pytest.LogCaptureFixture
) -> None:
    """subscribe_rate, max_client_channels and publish_rate each name themselves and their
    values; the same address refused by two settings gets a line for each."""
    # Rates of one token in 100 s: the public profile's 20/s and 1000/s refill a bucket within
    # 50 ms and 1 ms, which a loaded machine spends between two requests, and then the request
    # meant to be refused was let through.
    hub = await make_hub(
        profile="public",
        subscribe_rate=0.01,
        subscribe_burst=2,
        max_client_channels=1,
        publish_rate=0.01,
        publish_burst=1,
    )
    caplog.set_level(logging.WARNING, "hub.refusals")
    await hub.subscribe("/channels/one/events")
    await refused(hub, "/channels/two/events")  # a second channel made: max_client_channels
    await refused(hub, "/channels/one/events")  # the third stream: subscribe_rate
    await hub.publish("one", "x")
    await hub.publish("one", "y", status=429)
    lines = refusal_lines(caplog)
    assert len(lines) == 3, lines
    assert "by max_client_channels (1 channels brought into being per address)" in lines[0]
    assert "by subscribe_rate (0.01 new streams a second per address, 2 at once" in lines[1]
    assert "turned away a publish from 127.0.0.1 by publish_rate (0.01 events a second" in lines[2]


@pytest.mark.any_backplane
async def test_nothing_is_logged_when_nothing_is_refused(
    make_hub: MakeHub, caplog: pytest.LogCaptureFixture
) -> None:
    hub = await make_hub()
    caplog.set_level(logging.DEBUG, "hub.refusals")
    for _ in range(3):
        await hub.subscribe("/channels/a/events")
    assert (await hub.publish("a", "x"))["subscribers"] == 3  # none of them was turned away
    assert refusal_lines(caplog) == []


def test_many_addresses_cannot_flood_the_log_or_the_memory(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An attacker with 100,000 addresses: at most LINES_PER_WINDOW lines a minute, at most
    MAX_TRACKED pairs remembered, and the refusals not told one by one are counted, with how
    many addresses they came from, on the first line of the next minute."""
    clock = Clock()
    refusals = Refusals(load(path="/dev/null", env={}, overrides={"profile": "public"}), clock)
    caplog.set_level(logging.WARNING, "hub.refusals")
    for n in range(100_000):
        refusals.refused(f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}", "subscribe_rate", "a stream")
        assert refusals.tracked() <= MAX_TRACKED
    assert len(refusal_lines(caplog)) == LINES_PER_WINDOW
    clock.now += WINDOW
    refusals.refused("192.0.2.1", "subscribe_rate", "a stream")
    summary, line = refusal_lines(caplog)[LINES_PER_WINDOW:]
    assert summary.startswith(f"turned away {100_000 - LINES_PER_WINDOW} more request(s) from ")
    assert "client(s) not logged one by one" in summary
    assert line.startswith("turned away a stream from 192.0.2.1 by subscribe_rate")


def test_a_client_is_written_escaped() -> None:
    """No raw control character reaches a line, whatever the peer's text; long ones are cut."""
    assert shown_as("198.51.100.7") == "198.51.100.7"
    assert shown_as("evil\r\n2026-01-01 INFO forged") == "evil\\x0d\\x0a2026-01-01 INFO forged"
    assert shown_as("a\x1b[31m\x00") == "a\\x1b[31m\\x00"
    assert shown_as("") == "?"
    assert len(shown_as("x" * 10_000)) < 100


def test_a_line_never_carries_a_raw_control_character(caplog: pytest.LogCaptureFixture) -> None:
    refusals = Refusals(load(path="/dev/null", env={}, overrides={}))
    caplog.set_level(logging.WARNING, "hub.refusals")
    refusals.refused("x\ny\rz\x85", "max_subscribers", "a stream")
    (line,) = refusal_lines(caplog)
    assert line.isprintable(), line
    assert "x\\x0ay\\x0dz\\x85" in line
