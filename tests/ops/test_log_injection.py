"""No client can write a line of its own into the hub's log, in text or JSON.

Before, a grant whose ``sub`` held CR/LF was logged raw ("grant of <sub> refused"), and the text
after the line break appeared as a log line of its own; a lone surrogate in it (valid JSON,
``"\\udcff"``) made the handler print a ``--- Logging error ---`` traceback instead. These run a
real ``python -m hub serve`` and read what it writes.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp
import jwt
import orjson
import pytest

from hub.logs import escape
from tests.support.processes import HubProcess

SECRET = "a-subscribe-secret-of-at-least-32-bytes!"
FORGED = "FORGED hub.grants: admin logged in"
SUBS = [
    f"mallory\r\n2026-01-01 00:00:00,000 INFO {FORGED}",
    f"mallory\n{FORGED}",
    f"mallory\u2028{FORGED}",
    f"mallory\x1b[2J\x85{FORGED}",
    f"mallory\udcff\r{FORGED}",
]


@pytest.fixture(params=["text", "json"])
async def hub(request: pytest.FixtureRequest) -> AsyncIterator[HubProcess]:
    process = await HubProcess.spawn(
        "--config", "/dev/null",
        env={"HUB_HOST": "127.0.0.1", "HUB_PORT": "0", "HUB_LOG_LEVEL": "debug",
             "HUB_LOG_FORMAT": request.param, "HUB_PRIVATE_CHANNELS": "private/*",
             "HUB_SUBSCRIBE_JWT_SECRET": SECRET},
    )  # fmt: skip
    try:
        yield await process.started()
    finally:
        await process.stop()


async def test_a_grant_sub_cannot_forge_a_log_line(hub: HubProcess) -> None:
    async with aiohttp.ClientSession() as session:
        for sub in SUBS:
            claims = {"exp": int(time.time()) + 60, "channels": ["private/other"], "sub": sub}
            token = jwt.encode(claims, SECRET, algorithm="HS256")
            async with session.get(
                f"{hub.url}/channels/private/mine/events",
                headers={"Authorization": f"Bearer {token}", "Accept": "text/event-stream"},
            ) as response:
                assert response.status == 403
    await hub.stop()
    lines = "".join(hub.lines).splitlines()
    refused = [line for line in lines if "refused" in line]
    assert len(refused) == len(SUBS), hub.output
    for line in lines:
        assert not line.startswith(FORGED) and not line.startswith("2026-01-01"), line
        assert all(c.isprintable() for c in line), repr(line)
    assert not hub.errors, "".join(hub.errors)  # no "--- Logging error ---"
    for line, sub in zip(refused, SUBS, strict=True):
        if line.startswith("{"):
            record = orjson.loads(line)
            assert record["sub"] == escape(sub) and escape(sub) in record["message"]
        else:
            assert escape(sub) in line


def test_escape_keeps_text_and_shows_what_it_replaced() -> None:
    assert escape("Zürich 東京 plain") == "Zürich 東京 plain"
    assert escape("a\r\nb") == "a\\x0d\\x0ab"
    assert escape("\udcff\u2028\x7f") == "\\xff\\u2028\\x7f"
