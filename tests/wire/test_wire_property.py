"""The wire format, property-based: whatever a publisher sends, three independent SSE parsers
rebuild exactly what was published, or the publish was refused with a 400.

The parsers share no code with ``hub/`` or with each other:
- ``tests.support.sse_client.Parser``, written from the WHATWG rules ("Server-sent events",
  HTML §9.2), fed the live stream's bytes as they came and again in random-size chunks;
- npm's ``eventsource-parser``, fed the same bytes in random-size chunks (tests/js/parsers.mjs);
- Node's ``undici`` ``EventSource`` (what Node's global EventSource is), reading the channel's
  replay (``from=start``) from the hub itself.

hypothesis draws the payloads: text full of the characters that break SSE encoders (CR, LF,
CRLF, U+2028, U+2029, U+0085, VT, FF, NUL, a leading space, a BOM, lone surrogates, emoji),
JSON values made of them, and event names (valid and not). The hub is a real process on a
socket, on each backplane (Redis stores and reads back the frames).
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.support.hubs import running_hub
from tests.support.processes import dies_with_us
from tests.support.sse_client import Message, Parser

JS = Path(__file__).parents[1] / "js"
NAME_RE = r"[A-Za-z0-9_.:-]{1,64}"


def _node_too_old() -> bool:
    """undici 7 (pinned in tests/js) needs Node 20.18.1 or newer."""
    try:
        found = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return True
    version = tuple(int(part) for part in re.findall(r"\d+", found.stdout)[:3])
    return version < (20, 18, 1)


pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (JS / "node_modules").is_dir() or _node_too_old(),
    reason="needs node >= 20.18.1 and tests/js/node_modules (scripts/test runs npm ci there)",
)

TRICKY = [
    "\r", "\n", "\r\n", "\n\r", "\r\r", "\u2028", "\u2029", "\u0085", "\x0b", "\x0c", "\x1c",
    "\x00", " ", "  ", "\ufeff", ":", "data:", "id: 1", "event: x", "\t", "é", "ß", "\u200d",
    "😀", "👩‍👩‍👧", "\U0010ffff", "\ud800", "\udfff", "\ud83d", "\\", '"',
]  # fmt: skip
# mostly the tricky pieces, glued to arbitrary text
_pieces = st.one_of(st.sampled_from(TRICKY), st.sampled_from(TRICKY), st.text(max_size=6))
texts = st.lists(_pieces, max_size=12).map("".join)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
_valid_names = st.from_regex(NAME_RE, fullmatch=True)
event_names = st.one_of(st.none(), _valid_names, _valid_names, texts)
events = st.lists(
    st.tuples(event_names, st.one_of(texts, texts, json_values)), min_size=1, max_size=4
)


class Node:
    """One Node process running tests/js/parsers.mjs for every example of the test."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            ["node", "--no-warnings", str(JS / "parsers.mjs")],
            cwd=JS,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            preexec_fn=dies_with_us,
        )

    def ask(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, "the node parsers process died"
        answer = json.loads(line)
        assert answer["error"] is None, answer
        return list(answer["messages"])

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    runner = Node()
    yield runner
    runner.close()


def _has_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any("\ud800" <= c <= "\udfff" for c in value)
    if isinstance(value, list):
        return any(_has_surrogate(v) for v in value)
    if isinstance(value, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in value.items())
    return False


def _is_valid_name(name: str | None) -> bool:
    return name is None or re.fullmatch(NAME_RE, name) is not None


def _expected(event: str | None, data: Any, event_id: str) -> tuple[str, Any, str]:
    """What every parser must rebuild: strings arrive as text with line ends made LF; any other
    JSON value as JSON (compared parsed: 1.0 and 1e0 are the same number)."""
    if isinstance(data, str):
        rebuilt: Any = data.replace("\r\n", "\n").replace("\r", "\n")
    else:
        rebuilt = data
    return (event or "message", rebuilt, event_id)


def _seen(type_: str, data: str, event_id: str, was_string: bool) -> tuple[str, Any, str]:
    return (type_, data if was_string else json.loads(data), event_id)


def _chunks(raw: bytes, sizes: list[int]) -> list[bytes]:
    out, start, turn = [], 0, 0
    while start < len(raw):
        size = sizes[turn % len(sizes)]
        out.append(raw[start : start + size])
        start += size
        turn += 1
    return out


def _read_live(stream: httpx.Response, count: int) -> tuple[bytes, list[Message]]:
    """Read the stream's raw bytes until the WHATWG parser has dispatched ``count`` messages."""
    parser = Parser()
    raw = bytearray()
    for chunk in stream.iter_raw():
        raw += chunk
        parser.feed(chunk)
        if len(parser.messages) >= count:
            break
    assert len(parser.messages) == count, (count, bytes(raw))
    return bytes(raw), parser.messages


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_three_parsers_rebuild_what_was_published(
    backplane: str, backplane_url: str, node: Node
) -> None:
    """Every accepted event arrives, in order, with its name, its id and its data exactly as
    published (strings: line ends as LF), for three independent parsers; an event the hub
    cannot carry (a bad name, a lone surrogate, an integer out of range) is a 400, and
    anything else is accepted."""
    STATS = {"examples": 0, "accepted": 0, "refused": 0}
    # hundreds of streams from one address in a few seconds: the per-address rate is off here
    hub = running_hub(backplane_url, subscribe_rate=0)
    with hub as live, httpx.Client(base_url=live.url, timeout=10) as client:
        url = live.url

        @settings(
            max_examples=200,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        # every tricky piece alone, as text, inside JSON, and as an event name, whatever the
        # random draws find
        @example(batch=[(None, piece) for piece in TRICKY], sizes=[1])
        @example(batch=[("x", [piece, {piece: piece}]) for piece in TRICKY], sizes=[3, 1])
        @example(batch=[(piece, "x") for piece in TRICKY], sizes=[7])
        @given(batch=events, sizes=st.lists(st.integers(1, 40), min_size=1, max_size=6))
        def check(batch: list[tuple[str | None, Any]], sizes: list[int]) -> None:
            channel = f"wire-{uuid.uuid4().hex[:12]}"
            path = f"/channels/{channel}/events"
            expected, kinds, names = [], [], set()
            with client.stream("GET", path, headers={"Accept": "text/event-stream"}) as live:
                assert live.status_code == 200
                for event, drawn in batch:
                    body: dict[str, Any] = {"data": drawn}
                    if event is not None:
                        body["event"] = event
                    sent = json.dumps(body, ensure_ascii=True)
                    # what the JSON says: an escaped high+low surrogate pair is one character
                    data = json.loads(sent)["data"]
                    answer = client.post(
                        path, content=sent.encode(), headers={"Content-Type": "application/json"}
                    )
                    payload = answer.json()
                    carriable = _is_valid_name(event) and not _has_surrogate(data)
                    if not carriable:
                        assert answer.status_code == 400, (event, data, payload)
                        assert isinstance(payload["error"], str)
                        continue
                    assert answer.status_code == 202, (event, data, payload)
                    expected.append(_expected(event, data, payload["id"]))
                    kinds.append(isinstance(data, str))
                    names.add(event or "message")
                STATS["examples"] += 1
                STATS["accepted"] += len(expected)
                STATS["refused"] += len(batch) - len(expected)
                if not expected:
                    return
                raw, live_messages = _read_live(live, len(expected))

            def rebuilt(messages: list[tuple[str, str, str]]) -> list[tuple[str, Any, str]]:
                assert len(messages) == len(expected), messages
                return [
                    _seen(*m, was_string) for m, was_string in zip(messages, kinds, strict=True)
                ]

            # (a) the WHATWG parser: as the bytes came, then in random-size chunks
            assert rebuilt([(m.event, m.data, m.id) for m in live_messages]) == expected
            again = Parser()
            for chunk in _chunks(raw, sizes):
                again.feed(chunk)
            assert rebuilt([(m.event, m.data, m.id) for m in again.messages]) == expected
            # (b) eventsource-parser, the same bytes in random-size chunks
            chunks = [base64.b64encode(c).decode() for c in _chunks(raw, sizes)]
            parsed = node.ask({"op": "parse", "chunks": chunks})
            assert rebuilt([(m["type"], m["data"], m["id"]) for m in parsed]) == expected
            # (c) undici's EventSource, reading the replay from the hub
            replay = node.ask(
                {
                    "op": "eventsource",
                    "url": f"{url}{path}?from=start",
                    "count": len(expected),
                    "types": sorted(names),
                    "timeout_ms": 10_000,
                }
            )
            assert rebuilt([(m["type"], m["data"], m["id"]) for m in replay]) == expected

        check()
    print(f"wire property on {backplane}: {STATS}")
    assert STATS["accepted"] > STATS["examples"] // 2, (
        f"too few events accepted to prove much: {STATS}"
    )
