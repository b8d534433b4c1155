"""Holes the fuzzers of issue 11's proof found, each fixed and pinned by a test through HTTP.

A hole found while its code cannot be fixed yet goes here as an ``xfail(strict=True)`` (it fails
today; the day it is fixed the strict xfail turns red, asking for the marker to go) with an
entry in tests/ops/test_openapi.py's ``KNOWN_HOLES``. None is open today. Holes found later sit in
the tests of their module (e.g. a deleted demo answer: tests/demo/test_demo_answer.py).
"""

from __future__ import annotations

import pytest

from tests.conftest import HubServer
from tests.support.helpers import publish_batch


async def test_a_batch_retried_with_its_key_but_another_body_gets_the_first_receipt(
    hub: HubServer, backplane: str
) -> None:
    """The README: a retry with the same key returns the first receipt, whatever its body."""
    key = {"Idempotency-Key": "batch-retry-1"}
    first = await publish_batch(hub, [{"channel": "a", "data": 1}], headers=key)
    async with hub.session.post(
        f"{hub.url}/publish",
        json=[{"channel": "a", "data": 1}, {"channel": "b", "data": 2}],
        headers=key,
    ) as response:
        assert response.status == 202, await response.text()
        assert response.headers["Idempotent-Replayed"] == "true"
        assert await response.json() == first


@pytest.mark.parametrize("path", ["/assets/%0Ax", "/%0A", "/channels%0A", "/nothing/%0D%0A"])
async def test_a_path_with_a_line_break_is_a_json_404(
    hub: HubServer, backplane: str, path: str
) -> None:
    """The catch-all route took ``.*``, which stops at a newline, so such paths got aiohttp's
    text/plain 404 instead of the JSON error every answer promises (found by schemathesis)."""
    async with hub.session.get(f"{hub.url}{path}") as response:
        assert response.status == 404
        assert response.content_type == "application/json"
        body = await response.json()
        assert set(body) == {"error"} and "nothing at" in body["error"]
