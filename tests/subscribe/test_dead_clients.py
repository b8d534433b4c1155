"""A subscriber whose network vanishes (no FIN, no RST) is released within two heartbeats plus
``tcp_user_timeout`` (default: twice the heartbeat), not after aiohttp-sse's 120 s.

The vanishing happens inside a private network namespace (``unshare -n``, root only), whose own
firewall drops that one connection's packets: tests/support/netns_probe.py runs a real hub
process and the subscriber there and reports how long the release took. The host's network is
untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest

from tests.support.processes import ROOT, clean_env, run_to_end

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("iptables"),
    reason="needs root, unshare and iptables (scripts/test installs iptables)",
)


async def _released_after(*args: str) -> float | None:
    code, out, err = await run_to_end(
        "unshare", "-n", sys.executable, "-m", "tests.support.netns_probe", *args,
        env=clean_env(), cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert code == 0, out + err
    result = json.loads(out.strip().splitlines()[-1])
    released = result["released_after"]
    return None if released is None else float(released)


async def test_vanished_subscriber_is_released_after_heartbeats() -> None:
    """Heartbeat 0.5 s, tcp_user_timeout unset (so 1 s): released within 2 x 0.5 + 1 s, plus
    the kernel's retransmission timer granularity (~1 s on loopback) as slack."""
    released = await _released_after("--heartbeat", "0.5", "--limit", "20")
    assert released is not None, "the vanished subscriber was still held after 20 s"
    assert released < 2 * 0.5 + 1 + 2, released


async def test_tcp_user_timeout_is_the_bound() -> None:
    """tcp_user_timeout = 3: the kernel waits that long for an acknowledgement, no less, and
    the release follows within two heartbeats and the timer's slack."""
    released = await _released_after("--heartbeat", "0.5", "--tcp-user-timeout", "3")
    assert released is not None, "the vanished subscriber was still held after 20 s"
    assert 3 - 0.5 <= released < 2 * 0.5 + 3 + 2, released
