"""Run inside a private network namespace (``unshare -n``, as root): how long a hub takes to
release a subscriber whose network vanished without a FIN or RST.

Used by tests/subscribe/test_dead_clients.py; never touches the host's own network: the namespace
has only its own loopback, and the firewall rule that drops the subscriber's packets lives and
dies with it. Prints one JSON line: ``{"released_after": seconds or null}``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _subscribers(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
        text = answer.read().decode()
    match = re.search(r"^hub_subscribers (\d+)", text, re.M)
    assert match, text
    return int(match[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--heartbeat", default="0.5")
    parser.add_argument("--tcp-user-timeout", default=None)
    parser.add_argument("--limit", type=float, default=20.0)
    args = parser.parse_args()
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env |= {"PYTHONPATH": str(ROOT), "HUB_PORT": "0", "HUB_HEARTBEAT": args.heartbeat}
    env |= {"HUB_DEMO_JOBS": "false", "HUB_CONFIG": os.devnull}
    if args.tcp_user_timeout is not None:
        env["HUB_TCP_USER_TIMEOUT"] = args.tcp_user_timeout
    hub = subprocess.Popen(
        [sys.executable, "-m", "hub", "serve"], env=env, cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    client = None
    try:
        assert hub.stdout is not None
        port = 0
        for line in hub.stdout:
            found = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
            if found:
                port = int(found[1])
                break
        assert port, "the hub did not start"
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        client.sendall(b"GET /channels/dead/events HTTP/1.1\r\nHost: x\r\n\r\n")
        seen = b""
        while b"retry:" not in seen:
            seen += client.recv(4096)
        assert _subscribers(port) == 1
        mine = str(client.getsockname()[1])
        for direction in ("--sport", "--dport"):  # the connection's packets, both ways
            rule = ["iptables", "-A", "INPUT", "-p", "tcp", direction, mine, "-j", "DROP"]
            subprocess.run(rule, check=True)
        dropped = time.monotonic()
        released = None
        while time.monotonic() - dropped < args.limit:
            if _subscribers(port) == 0:
                released = time.monotonic() - dropped
                break
            time.sleep(0.05)
        print(json.dumps({"released_after": released}), flush=True)
    finally:
        hub.terminate()  # this hub, by its pid
        try:
            hub.wait(timeout=10)
        except subprocess.TimeoutExpired:
            hub.kill()
            hub.wait()
        if client is not None:
            client.close()


if __name__ == "__main__":
    main()
